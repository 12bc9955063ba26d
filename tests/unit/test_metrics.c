/* Unit tests for src/core/metrics.c: histogram buckets, the text rendering
 * (exact bucket bounds, cumulative counts, sums in base units), HTTP counts by
 * route and status, and the consumer lag in both of its shapes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "core/metrics.h"

static const natter_metrics_route_t routes[] = {
    {"other", "unmatched"},
    {"POST", "/chats/{id}/messages"},
    {NULL, NULL}, /* a slot with no route of its own */
};

static char *render(void)
{
    size_t len;
    char *text = natter_metrics_render(routes, sizeof(routes) / sizeof(routes[0]), &len);
    assert_int_equal(strlen(text), len);
    return text;
}

static void assert_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)) != NULL; p += n)
        if ((p == text || p[-1] == '\n') && p[n] == '\n')
            return;
    fail_msg("line not rendered: %s", line);
}

static void test_hist_buckets(void **state)
{
    (void)state;
    static const uint64_t le[] = {10, 20, 40};
    natter_hist_t h = {.le = le, .n = 3};
    natter_hist_observe(&h, 0);
    natter_hist_observe(&h, 10); /* a bound belongs to its own bucket (le: less or equal) */
    natter_hist_observe(&h, 11);
    natter_hist_observe(&h, 40);
    natter_hist_observe(&h, 41);
    natter_hist_observe(&h, 1000000);
    assert_int_equal(h.buckets[0], 2);
    assert_int_equal(h.buckets[1], 1);
    assert_int_equal(h.buckets[2], 1);
    assert_int_equal(h.buckets[3], 2); /* +Inf */
    assert_int_equal(h.count, 6);
    assert_int_equal(h.sum, 0 + 10 + 11 + 40 + 41 + 1000000);
}

static void test_render_duration_histogram(void **state)
{
    (void)state;
    natter_hist_observe(&natter_m()->store_batch, 25000);      /* exactly the first bound */
    natter_hist_observe(&natter_m()->store_batch, 1500000);    /* 1.5 ms: the 1.6 ms bucket */
    natter_hist_observe(&natter_m()->store_batch, 20000000000); /* 20 s: past every bound */
    char *text = render();
    assert_line(text, "# TYPE natter_store_batch_duration_seconds histogram");
    assert_line(text, "natter_store_batch_duration_seconds_bucket{le=\"0.000025\"} 1");
    assert_line(text, "natter_store_batch_duration_seconds_bucket{le=\"0.0008\"} 1");
    assert_line(text, "natter_store_batch_duration_seconds_bucket{le=\"0.0016\"} 2");
    assert_line(text, "natter_store_batch_duration_seconds_bucket{le=\"13.1072\"} 2");
    assert_line(text, "natter_store_batch_duration_seconds_bucket{le=\"+Inf\"} 3");
    assert_line(text, "natter_store_batch_duration_seconds_sum 20.001525");
    assert_line(text, "natter_store_batch_duration_seconds_count 3");
    free(text);
}

static void test_render_size_histogram(void **state)
{
    (void)state;
    natter_hist_observe(&natter_m()->store_batch_size, 1);
    natter_hist_observe(&natter_m()->store_batch_size, 1000);
    char *text = render();
    assert_line(text, "# TYPE natter_store_batch_size histogram");
    assert_line(text, "natter_store_batch_size_bucket{le=\"1\"} 1");
    assert_line(text, "natter_store_batch_size_bucket{le=\"512\"} 1");
    assert_line(text, "natter_store_batch_size_bucket{le=\"1024\"} 2");
    assert_line(text, "natter_store_batch_size_bucket{le=\"+Inf\"} 2");
    assert_line(text, "natter_store_batch_size_sum 1001");
    assert_line(text, "natter_store_batch_size_count 2");
    free(text);
}

static void test_http_by_route_and_status(void **state)
{
    (void)state;
    natter_metrics_count_http(1, 202);
    natter_metrics_count_http(1, 202);
    natter_metrics_count_http(1, 429);
    natter_metrics_count_http(0, 404);
    natter_metrics_count_http(0, 42);  /* out of range: counted at the nearest bound */
    natter_metrics_count_http(0, 999);
    natter_metrics_count_http(2, 200); /* counted, never rendered: the slot has no path */
    natter_metrics_count_http(NATTER_METRICS_ROUTES, 200); /* no such slot: ignored */
    char *text = render();
    assert_line(text, "# TYPE natter_http_requests_total counter");
    assert_line(text, "natter_http_requests_total{method=\"POST\",route=\"/chats/{id}/messages\",status=\"202\"} 2");
    assert_line(text, "natter_http_requests_total{method=\"POST\",route=\"/chats/{id}/messages\",status=\"429\"} 1");
    assert_line(text, "natter_http_requests_total{method=\"other\",route=\"unmatched\",status=\"404\"} 1");
    assert_line(text, "natter_http_requests_total{method=\"other\",route=\"unmatched\",status=\"100\"} 1");
    assert_line(text, "natter_http_requests_total{method=\"other\",route=\"unmatched\",status=\"599\"} 1");
    assert_null(strstr(text, "status=\"200\""));
    assert_null(strstr(text, "status=\"500\""));
    free(text);
}

static void test_lag_embedded(void **state)
{
    (void)state;
    natter_count(&natter_m()->messages_posted, 5);
    natter_count(&natter_m()->messages_stored, 3);
    char *text = render();
    assert_line(text, "natter_consumer_lag 2");
    free(text);
    natter_count(&natter_m()->messages_stored, 4); /* a store ahead of its poster's count */
    text = render();
    assert_line(text, "natter_consumer_lag 0");
    free(text);
}

static void test_lag_by_partition(void **state)
{
    (void)state;
    natter_metrics_set_partitions(3);
    natter_metrics_set_partition_lag(0, 7);
    natter_metrics_set_partition_lag(2, 11);
    natter_metrics_set_partition_lag(5, 99); /* beyond the topic: not rendered */
    char *text = render();
    assert_line(text, "# TYPE natter_consumer_lag gauge");
    assert_line(text, "natter_consumer_lag{partition=\"0\"} 7");
    assert_line(text, "natter_consumer_lag{partition=\"1\"} 0");
    assert_line(text, "natter_consumer_lag{partition=\"2\"} 11");
    assert_null(strstr(text, "partition=\"5\""));
    assert_null(strstr(text, "\nnatter_consumer_lag "));
    free(text);
    natter_metrics_set_partitions(0);
}

static void test_process(void **state)
{
    (void)state;
    natter_metrics_init();
    char *text = render();
    assert_line(text, "# TYPE process_cpu_seconds_total counter");
    assert_line(text, "# TYPE process_resident_memory_bytes gauge");
    assert_line(text, "# TYPE process_open_fds gauge");
    assert_line(text, "# TYPE process_start_time_seconds gauge");
    assert_null(strstr(text, "process_resident_memory_bytes 0\n"));
    assert_null(strstr(text, "process_open_fds 0\n"));
    assert_null(strstr(text, "process_start_time_seconds 0\n"));
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hist_buckets),
        cmocka_unit_test(test_render_duration_histogram),
        cmocka_unit_test(test_render_size_histogram),
        cmocka_unit_test(test_http_by_route_and_status),
        cmocka_unit_test(test_lag_embedded),
        cmocka_unit_test(test_lag_by_partition),
        cmocka_unit_test(test_process),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
