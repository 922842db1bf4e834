/* Peak FMA rate of one core with 512-bit (zmm) and 256-bit (ymm) vectors: 12 independent
 * accumulators per width, so the loop is bound by FMA throughput, not latency. On a CPU whose
 * AVX-512 units are full width the zmm figure is about twice the ymm one; where AVX-512 is split
 * into two 256-bit halves (Zen 4) they are about equal. Run it alone:
 *
 *     gcc -O2 -o /tmp/fma_width bench/fma_width.c && /tmp/fma_width
 */
#include <immintrin.h>
#include <stdio.h>
#include <time.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
#define N 200000000L
/* One function per width: W is the vector width in bits (the intrinsics' infix), L its lanes,
 * C the asm constraint that keeps the 12 accumulators in vector registers. */
#define PEAK(name, W, L, TGT, C) __attribute__((target(TGT))) double name(void){ \
  __m##W a0=_mm##W##_set1_ps(1.0f),a1=a0,a2=a0,a3=a0,a4=a0,a5=a0,a6=a0,a7=a0,a8=a0,a9=a0,a10=a0,a11=a0; \
  __m##W b=_mm##W##_set1_ps(0.999999f), c=_mm##W##_set1_ps(1e-7f); \
  double t=now(); \
  for(long i=0;i<N/16;i++){ \
    a0=_mm##W##_fmadd_ps(a0,b,c);a1=_mm##W##_fmadd_ps(a1,b,c);a2=_mm##W##_fmadd_ps(a2,b,c);a3=_mm##W##_fmadd_ps(a3,b,c); \
    a4=_mm##W##_fmadd_ps(a4,b,c);a5=_mm##W##_fmadd_ps(a5,b,c);a6=_mm##W##_fmadd_ps(a6,b,c);a7=_mm##W##_fmadd_ps(a7,b,c); \
    a8=_mm##W##_fmadd_ps(a8,b,c);a9=_mm##W##_fmadd_ps(a9,b,c);a10=_mm##W##_fmadd_ps(a10,b,c);a11=_mm##W##_fmadd_ps(a11,b,c); \
    __asm__ volatile("" : "+" C(a0),"+" C(a1),"+" C(a2),"+" C(a3),"+" C(a4),"+" C(a5),"+" C(a6),"+" C(a7),"+" C(a8),"+" C(a9),"+" C(a10),"+" C(a11)); \
  } \
  t=now()-t; float s[L]; _mm##W##_storeu_ps(s,_mm##W##_add_ps(a0,a11)); if(s[0]==42) printf("x"); \
  return (double)(N/16)*12*L*2/t/1e9; \
}
PEAK(z, 512, 16, "avx512f", "v")
PEAK(y, 256, 8, "avx2,fma", "x")
int main(){ for(int r=0;r<2;r++) printf("one core: zmm %.1f GFLOP/s, ymm %.1f GFLOP/s\n", z(), y()); return 0;}
