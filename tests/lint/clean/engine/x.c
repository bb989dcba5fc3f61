#include "x.h"
#include <stdlib.h>
/* getenv( __attribute__((weak)) only in a comment */
int x_f(void) { return y_f(); }
