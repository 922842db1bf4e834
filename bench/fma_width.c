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
__attribute__((target("avx512f"))) double z(void){
  __m512 a0=_mm512_set1_ps(1.0f),a1=a0,a2=a0,a3=a0,a4=a0,a5=a0,a6=a0,a7=a0,a8=a0,a9=a0,a10=a0,a11=a0;
  __m512 b=_mm512_set1_ps(0.999999f), c=_mm512_set1_ps(1e-7f);
  double t=now();
  for(long i=0;i<N/16;i++){
    a0=_mm512_fmadd_ps(a0,b,c);a1=_mm512_fmadd_ps(a1,b,c);a2=_mm512_fmadd_ps(a2,b,c);a3=_mm512_fmadd_ps(a3,b,c);
    a4=_mm512_fmadd_ps(a4,b,c);a5=_mm512_fmadd_ps(a5,b,c);a6=_mm512_fmadd_ps(a6,b,c);a7=_mm512_fmadd_ps(a7,b,c);
    a8=_mm512_fmadd_ps(a8,b,c);a9=_mm512_fmadd_ps(a9,b,c);a10=_mm512_fmadd_ps(a10,b,c);a11=_mm512_fmadd_ps(a11,b,c);
    __asm__ volatile("" : "+v"(a0),"+v"(a1),"+v"(a2),"+v"(a3),"+v"(a4),"+v"(a5),"+v"(a6),"+v"(a7),"+v"(a8),"+v"(a9),"+v"(a10),"+v"(a11));
  }
  t=now()-t; float s[16]; _mm512_storeu_ps(s,_mm512_add_ps(a0,a11)); if(s[0]==42) printf("x");
  return (double)(N/16)*12*16*2/t/1e9;
}
__attribute__((target("avx2,fma"))) double y(void){
  __m256 a0=_mm256_set1_ps(1.0f),a1=a0,a2=a0,a3=a0,a4=a0,a5=a0,a6=a0,a7=a0,a8=a0,a9=a0,a10=a0,a11=a0;
  __m256 b=_mm256_set1_ps(0.999999f), c=_mm256_set1_ps(1e-7f);
  double t=now();
  for(long i=0;i<N/16;i++){
    a0=_mm256_fmadd_ps(a0,b,c);a1=_mm256_fmadd_ps(a1,b,c);a2=_mm256_fmadd_ps(a2,b,c);a3=_mm256_fmadd_ps(a3,b,c);
    a4=_mm256_fmadd_ps(a4,b,c);a5=_mm256_fmadd_ps(a5,b,c);a6=_mm256_fmadd_ps(a6,b,c);a7=_mm256_fmadd_ps(a7,b,c);
    a8=_mm256_fmadd_ps(a8,b,c);a9=_mm256_fmadd_ps(a9,b,c);a10=_mm256_fmadd_ps(a10,b,c);a11=_mm256_fmadd_ps(a11,b,c);
    __asm__ volatile("" : "+x"(a0),"+x"(a1),"+x"(a2),"+x"(a3),"+x"(a4),"+x"(a5),"+x"(a6),"+x"(a7),"+x"(a8),"+x"(a9),"+x"(a10),"+x"(a11));
  }
  t=now()-t; float s[8]; _mm256_storeu_ps(s,_mm256_add_ps(a0,a11)); if(s[0]==42) printf("x");
  return (double)(N/16)*12*8*2/t/1e9;
}
int main(){ for(int r=0;r<2;r++) printf("one core: zmm %.1f GFLOP/s, ymm %.1f GFLOP/s\n", z(), y()); return 0;}
