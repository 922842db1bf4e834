/* A parallel launcher for TVM-generated CPU kernels that hands out work in chunks on demand
 * (bench/parallel_launch.py). TVM's own launcher gives each of N threads one fixed 1/N of a
 * kernel's parallel loop, so a kernel takes as long as its slowest thread; here every thread
 * claims the next of `chunks` pieces until none is left, as ONNX Runtime's pool does.
 *
 * A kernel's parallel body is a lambda f(task_id, env, cdata) that runs piece task_id of
 * env->num_task; any num_task works, which is what makes the swap possible. Kernels that use
 * TVMBackendParallelBarrier (need all pieces at once) must not run here: the script checks that
 * the library imports no barrier. */
#define _GNU_SOURCE
#include <immintrin.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

typedef struct { void* sync_handle; int32_t num_task; } Env;
typedef int (*Lambda)(int task_id, Env* env, void* cdata);

static int nworkers = 0, nchunks = 8;
static long spin_limit = 200000;
static _Atomic uint32_t generation;
static _Atomic int next_chunk, done_chunks, failed, sleepers, active;
static Lambda job_f;
static void* job_cdata;
static Env job_env;

static void run_chunks(void) {
  int c;
  while ((c = atomic_fetch_add(&next_chunk, 1)) < nchunks) {
    if (job_f(c, &job_env, job_cdata) != 0) atomic_store(&failed, 1);
    atomic_fetch_add(&done_chunks, 1);
  }
}

static void* worker(void* arg) {
  (void)arg;
  uint32_t seen = atomic_load(&generation), g;
  for (;;) {
    long spins = 0;
    while ((g = atomic_load(&generation)) == seen) {
      if (++spins < spin_limit) { _mm_pause(); continue; }
      atomic_fetch_add(&sleepers, 1);
      if (atomic_load(&generation) == seen)
        syscall(SYS_futex, &generation, FUTEX_WAIT_PRIVATE, seen, 0, 0, 0);
      atomic_fetch_sub(&sleepers, 1);
      spins = 0;
    }
    seen = g;
    atomic_fetch_add(&active, 1);
    run_chunks();
    atomic_fetch_sub(&active, 1);
  }
  return 0;
}

/* Start threads - 1 workers (the caller is the last thread); returns the workers running. */
int launcher_configure(int threads, int chunks, long spin) {
  nchunks = chunks;
  spin_limit = spin;
  for (; nworkers < threads - 1; nworkers++) {
    pthread_t t;
    if (pthread_create(&t, 0, worker, 0) != 0) break;
    pthread_detach(t);
  }
  return nworkers;
}

int launcher_launch(Lambda f, void* cdata, int num_task) {
  (void)num_task;
  job_f = f;
  job_cdata = cdata;
  job_env.sync_handle = 0;
  job_env.num_task = nchunks;
  atomic_store(&failed, 0);
  atomic_store(&done_chunks, 0);
  atomic_store(&next_chunk, 0);
  atomic_fetch_add(&generation, 1);
  if (atomic_load(&sleepers))
    syscall(SYS_futex, &generation, FUTEX_WAKE_PRIVATE, 0x7fffffff, 0, 0, 0);
  run_chunks();
  /* the job's fields stay until every piece is done and no worker is inside run_chunks */
  while (atomic_load(&done_chunks) < nchunks || atomic_load(&active)) _mm_pause();
  return atomic_load(&failed) ? -1 : 0;
}
