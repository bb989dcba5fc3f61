#include "a.h"
#include "b.h"
int a_f(void) { return b_f(); }
