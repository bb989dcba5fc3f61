#include <stdlib.h>
/* getenv( in a comment is no finding, nor "getenv(" in a string */
const char *c_f(void) { return getenv("X"); }
