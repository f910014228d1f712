/* Open MPI all-reduce time for the same sizes as bench/allreduce.ts (the comparison in
 * src/native/README.md):
 *   mpicc -O2 bench/allreduce-mpi.c -o /tmp/allreduce-mpi
 *   mpirun -np 2 --oversubscribe /tmp/allreduce-mpi        (add --allow-run-as-root as root) */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

static int cmp(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char** argv) {
  const char* names[] = {"tiny", "small", "qwen0.5b"};
  const int sizes[] = {110000, 180000, 8900000};
  const int reps = 20;
  int rank, world;
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  for (int s = 0; s < 3; s++) {
    float* buf = malloc(sizeof(float) * sizes[s]);
    for (int i = 0; i < sizes[s]; i++) buf[i] = rank + 1;
    double t[reps];
    for (int i = 0; i < 3; i++) MPI_Allreduce(MPI_IN_PLACE, buf, sizes[s], MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    for (int i = 0; i < reps; i++) {
      double t0 = MPI_Wtime();
      MPI_Allreduce(MPI_IN_PLACE, buf, sizes[s], MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
      t[i] = (MPI_Wtime() - t0) * 1e3;
    }
    qsort(t, reps, sizeof(double), cmp);
    if (rank == 0) printf("{\"bench\":\"allreduce\",\"library\":\"openmpi\",\"ranks\":%d,\"recipe\":\"%s\",\"values\":%d,\"bytes\":%d,\"median_ms\":%.3f,\"min_ms\":%.3f}\n", world, names[s], sizes[s], sizes[s] * 4, t[reps / 2], t[0]);
    free(buf);
  }
  MPI_Finalize();
  return 0;
}
