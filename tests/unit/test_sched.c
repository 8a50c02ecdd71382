/* test_sched.c — the selection of sched.c: effective priority and softmax
 * draws without replacement (reference §2.3). */
#include "sched.h"
#include "unit.h"

#include <math.h>
#include <stdint.h>

TEST(test_effective_priority) {
  /* 2026-11-21T08:15:10.000Z is 1795248910000 ms */
  int64_t now = 1795248910000;
  CHECK(sched_effective_priority(2.0, NULL, now) == 2.0);
  CHECK(sched_effective_priority(2.0, "garbage", now) == 2.0);
  CHECK(fabs(sched_effective_priority(0.0, "2026-11-21T08:05:10.000Z", now) - 1.0) < 1e-9);
  CHECK(fabs(sched_effective_priority(1.5, "2026-11-21T07:15:10.000Z", now) - 7.5) < 1e-9);
  CHECK(sched_effective_priority(1.0, "2026-11-21T09:00:00.000Z", now) == 1.0); /* future: no boost */
}

TEST(test_without_replacement) {
  double ep[5] = {0, 1, 2, 3, 4};
  int out[5], seen[5] = {0};
  uint64_t rng = 7;
  CHECK(sched_softmax_pick(ep, 5, 9, &rng, out) == 5);
  for (int i = 0; i < 5; i++) {
    CHECK(out[i] >= 0 && out[i] < 5);
    if (out[i] >= 0 && out[i] < 5) seen[out[i]]++;
  }
  for (int i = 0; i < 5; i++) CHECK(seen[i] == 1);
  CHECK(sched_softmax_pick(ep, 5, 0, &rng, out) == 0);
  CHECK(sched_softmax_pick(ep, 0, 3, &rng, out) == 0);
}

TEST(test_distribution) {
  double ep[3] = {0, 1, 2};
  int counts[3] = {0}, out[1];
  uint64_t rng = 42;
  const int n = 60000;
  for (int i = 0; i < n; i++) {
    sched_softmax_pick(ep, 3, 1, &rng, out);
    counts[out[0]]++;
  }
  double z = exp(0) + exp(1) + exp(2);
  for (int i = 0; i < 3; i++) CHECK(fabs((double)counts[i] / n - exp(i) / z) < 0.01);
}

TEST(test_underflow_renormalises) {
  double ep[3] = {1000, 0, 0};
  int out[2], second[3] = {0}, first_not_0 = 0;
  uint64_t rng = 1;
  for (int i = 0; i < 4000; i++) {
    sched_softmax_pick(ep, 3, 2, &rng, out);
    first_not_0 += out[0] != 0;
    second[out[1]]++;
  }
  CHECK(first_not_0 == 0);
  CHECK(second[0] == 0);
  CHECK(fabs(second[1] / 4000.0 - 0.5) < 0.04);
}

TEST(test_reproducible) {
  double ep[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int a[8], b[8];
  uint64_t r1 = 99, r2 = 99;
  sched_softmax_pick(ep, 8, 8, &r1, a);
  sched_softmax_pick(ep, 8, 8, &r2, b);
  CHECK(memcmp(a, b, sizeof a) == 0);
}

int main (void) {
  RUN(test_effective_priority);
  RUN(test_without_replacement);
  RUN(test_distribution);
  RUN(test_underflow_renormalises);
  RUN(test_reproducible);
  return unit_report();
}
