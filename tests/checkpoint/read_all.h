/* read_all.h: the tests' way to read a checkpoint's tensors whole (Criterion asserts inside). */
#ifndef TS_TESTS_CKPT_READ_ALL_H
#define TS_TESTS_CKPT_READ_ALL_H

/* Every tensor of the checkpoint at `path` whose name starts with one of the n prefixes
 * ("params/", "adam_m/"), read whole as f32 and concatenated in the manifest's order (malloc'd;
 * *count floats). */
float *ck_read_all(const char *path, const char *const *prefixes, int n, long *count);

#endif
