/* bench_util.h: what every benchmark needs: clocks and the median of repeated timings. */
#ifndef TS_BENCH_UTIL_H
#define TS_BENCH_UTIL_H

double ts_bench_now_s(void); /* monotonic wall-clock seconds */
double ts_bench_cpu_s(void); /* CPU seconds of the whole process */

/* The median of v[0..n), n >= 1; sorts v in place. */
double ts_bench_median(double *v, int n);

#endif
