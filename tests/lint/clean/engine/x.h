/* x.h */
#include "y.h"
int x_f(void);
