#include "models/m_impl.h"
int m_f(void) { return 0; }
