/* Unit tests for load/load_scrape.c: the consumer lag and batches in flight
 * read out of a Prometheus text exposition. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "load_scrape.h"

static void parse(const char *text, double *lag, double *batches)
{
    load_scrape_parse(text, strlen(text), lag, batches);
}

static void test_total_wins_over_partitions(void **state)
{
    (void)state;
    double lag, batches;
    parse("# HELP natter_consumer_lag Messages in the log not yet stored.\n"
          "# TYPE natter_consumer_lag gauge\n"
          "natter_consumer_lag{partition=\"0\"} 5\n"
          "natter_consumer_lag{partition=\"1\"} 7\n"
          "natter_consumer_lag{partition=\"all\"} 12\n"
          "natter_batches_in_flight 3\n"
          "natter_batches_in_flight_other 99\n",
          &lag, &batches);
    assert_true(lag == 12 && batches == 3);
}

static void test_sum_and_unlabeled(void **state)
{
    (void)state;
    double lag, batches;
    parse("natter_consumer_lag{partition=\"0\"} 5\nnatter_consumer_lag{partition=\"3\"} 2.5\n", &lag, &batches);
    assert_true(lag == 7.5 && batches == -1);
    parse("natter_consumer_lag 42\nnatter_batches_in_flight 0", &lag, &batches); /* no final newline */
    assert_true(lag == 42 && batches == 0);
}

static void test_absent_or_malformed(void **state)
{
    (void)state;
    double lag, batches;
    parse("", &lag, &batches);
    assert_true(lag == -1 && batches == -1);
    parse("<html>not found</html>\n# natter_consumer_lag 5\nnatter_consumer_lagging 5\n"
          "natter_consumer_lag{partition=\"0\" 5\nnatter_consumer_lag \nnatter_consumer_lag x\n",
          &lag, &batches);
    assert_true(lag == -1 && batches == -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_total_wins_over_partitions),
        cmocka_unit_test(test_sum_and_unlabeled),
        cmocka_unit_test(test_absent_or_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
