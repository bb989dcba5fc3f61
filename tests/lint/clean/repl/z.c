#include "x.h"
int z_f(void) { return x_f(); }
