#include "y.h"
int y_f(void) { return 2; }
