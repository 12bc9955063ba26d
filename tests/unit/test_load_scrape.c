/* Unit tests for load/load_scrape.c: values read out of a Prometheus text
 * exposition — the consumer lag under each dialect's name, batches in
 * flight, the process's CPU and memory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "load_scrape.h"

static void parse(const char *text, const char *lag_name, load_metrics_t *m)
{
    load_scrape_parse(text, strlen(text), lag_name, "natter_batches_in_flight", m);
}

static void test_total_wins_over_partitions(void **state)
{
    (void)state;
    load_metrics_t m;
    parse("# HELP natter_consumer_lag Messages in the log not yet stored.\n"
          "# TYPE natter_consumer_lag gauge\n"
          "natter_consumer_lag{partition=\"0\"} 5\n"
          "natter_consumer_lag{partition=\"1\"} 7\n"
          "natter_consumer_lag{partition=\"all\"} 12\n"
          "natter_batches_in_flight 3\n"
          "natter_batches_in_flight_other 99\n",
          "natter_consumer_lag", &m);
    assert_true(m.lag == 12 && m.batches == 3 && m.cpu_s == -1 && m.rss_bytes == -1);
}

static void test_sum_and_unlabeled(void **state)
{
    (void)state;
    load_metrics_t m;
    parse("natter_consumer_lag{partition=\"0\"} 5\nnatter_consumer_lag{partition=\"3\"} 2.5\n", "natter_consumer_lag",
          &m);
    assert_true(m.lag == 7.5 && m.batches == -1);
    parse("natter_consumer_lag 42\nnatter_batches_in_flight 0", "natter_consumer_lag", &m); /* no final newline */
    assert_true(m.lag == 42 && m.batches == 0);
}

static void test_the_dialects_lag_name(void **state)
{
    (void)state;
    load_metrics_t m;
    const char *seed = "# TYPE consumer_lag gauge\nconsumer_lag 9\n";
    parse(seed, "consumer_lag", &m);
    assert_true(m.lag == 9);
    parse(seed, "natter_consumer_lag", &m);
    assert_true(m.lag == -1);
    /* natter's name is not the original's with a prefix match */
    parse("natter_consumer_lag 4\n", "consumer_lag", &m);
    assert_true(m.lag == -1);
}

static void test_process_metrics(void **state)
{
    (void)state;
    load_metrics_t m;
    parse("# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 12.25\n"
          "process_resident_memory_bytes 1.5e+08\nprocess_resident_memory_bytes_other 1\n",
          "natter_consumer_lag", &m);
    assert_true(m.cpu_s == 12.25 && m.rss_bytes == 1.5e8 && m.lag == -1);
    double v;
    assert_int_equal(load_scrape_value("x 1\n", 4, "y", &v), -1);
    assert_int_equal(load_scrape_value("y 1\n", 4, "y", &v), 0);
    assert_true(v == 1);
}

static void test_absent_or_malformed(void **state)
{
    (void)state;
    load_metrics_t m;
    parse("", "natter_consumer_lag", &m);
    assert_true(m.lag == -1 && m.batches == -1);
    parse("<html>not found</html>\n# natter_consumer_lag 5\nnatter_consumer_lagging 5\n"
          "natter_consumer_lag{partition=\"0\" 5\nnatter_consumer_lag \nnatter_consumer_lag x\n",
          "natter_consumer_lag", &m);
    assert_true(m.lag == -1 && m.batches == -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_total_wins_over_partitions), cmocka_unit_test(test_sum_and_unlabeled),
        cmocka_unit_test(test_the_dialects_lag_name),      cmocka_unit_test(test_process_metrics),
        cmocka_unit_test(test_absent_or_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
