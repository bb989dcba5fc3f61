/* b.h */
#include "a.h"
int b_f(void);
