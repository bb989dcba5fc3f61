#include "b.h"
int b_f(void) { return 1; }
