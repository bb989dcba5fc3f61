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

/* 1 when this process writes files (m:save, m:export, plots): rank 0, every
 * rank after tl.mpi.all_ranks_write(true), one process without a launcher,
 * and a forked tl.sweep run. */
int tl_lua_mpi_writes(void);

/* The engine's collectives over MPI_COMM_WORLD (dist.h), or NULL when MPI
 * is not running (no launcher, or built without MPI). */
struct tl_dist *tl_lua_mpi_dist(void);

/* Around a data-parallel fit: SIGUSR1 / SIGTERM then stop it at a step
 * boundary on every rank instead of ending the process. */
void tl_lua_mpi_fit_running(int on);

#endif
