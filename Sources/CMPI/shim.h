// Open MPI for Swift: <mpi.h>, and functions for its predefined handles, which are macros
// (MPI_COMM_WORLD and the rest expand to addresses of library globals) that Swift cannot
// import.
#include <mpi.h>

static inline MPI_Comm gradaccum_mpi_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Datatype gradaccum_mpi_float(void) { return MPI_FLOAT; }
static inline MPI_Datatype gradaccum_mpi_double(void) { return MPI_DOUBLE; }
static inline MPI_Datatype gradaccum_mpi_int64(void) { return MPI_INT64_T; }
static inline MPI_Datatype gradaccum_mpi_byte(void) { return MPI_BYTE; }
static inline MPI_Op gradaccum_mpi_sum(void) { return MPI_SUM; }
static inline MPI_Op gradaccum_mpi_max(void) { return MPI_MAX; }
static inline void *gradaccum_mpi_in_place(void) { return MPI_IN_PLACE; }
