/* l_mpi.h — tl.mpi: rank, size, barrier and broadcast/gather of Lua values
 * over Open MPI (repl/l_mpi.c). Built without MPI (no mpicc), tl.mpi is the
 * one-process world: rank 0, size 1, collectives that return their input. */
#ifndef TL_L_MPI_H
#define TL_L_MPI_H

#include <lua.h>

/* Create tl.mpi in the tl table at absolute index `tl`; under mpirun the
 * first call initialises MPI (MPI_Finalize runs at exit). */
void tl_lua_open_mpi(lua_State *L, int tl);

/* 1 when this process should print nothing of the training log: a rank
 * other than 0, unless tl.mpi.all_ranks_print(true) was called. */
int tl_lua_mpi_quiet(void);

#endif
