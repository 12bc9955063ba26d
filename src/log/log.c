#include "log/log.h"
#include "core/error.h"
#include "core/fault.h"
#include "core/metrics.h"
#include "core/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const natter_log_ops_t *const backends[] = {&natter_log_local, &natter_log_kafka};

const natter_log_ops_t *natter_log_find(const char *name)
{
    for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]); i++)
        if (strcmp(backends[i]->name, name) == 0)
            return backends[i];
    return NULL;
}

natter_log_t *natter_log_open(const natter_log_ops_t *ops, const natter_config_t *cfg, char *err, size_t errlen)
{
    natter_log_t *log = xcalloc(1, ops->size);
    log->ops = ops;
    if (ops->open(log, cfg, err, errlen) != 0) {
        free(log);
        return NULL;
    }
    return log;
}

void natter_log_close(natter_log_t *log)
{
    if (log == NULL)
        return;
    log->ops->close(log);
    free(log);
}

int natter_log_append(natter_log_t *log, natter_msg_t *msg)
{
    int rc = natter_fault_check(NATTER_FAULT_LOG_APPEND);
    if (rc == 0)
        rc = log->ops->append(log, msg);
    if (rc == 0)
        natter_count(&natter_m()->messages_posted, 1);
    return rc;
}

size_t natter_log_poll(natter_log_t *log, natter_msg_t **head, size_t max, int timeout_ms)
{
    if (natter_fault_check(NATTER_FAULT_LOG_POLL) != 0)
        return 0;
    size_t n = log->ops->poll(log, head, max, timeout_ms);
    natter_count(&natter_m()->messages_consumed, n);
    return n;
}

void natter_log_commit(natter_log_t *log, natter_msg_t *head, int status)
{
    int rc = natter_fault_check(NATTER_FAULT_LOG_COMMIT);
    log->ops->commit(log, head, rc != 0 ? rc : status);
}

int natter_log_ping(natter_log_t *log)
{
    int rc = natter_fault_check(NATTER_FAULT_LOG_PING);
    return rc != 0 ? rc : log->ops->ping(log);
}

void natter_log_shutdown(natter_log_t *log)
{
    log->ops->shutdown(log);
}

int natter_log_drained(natter_log_t *log)
{
    return log->ops->drained(log);
}

int natter_log_consumer_status(natter_log_t *log, char *why, size_t len)
{
    if (log->ops->version < 2 || log->ops->consumer_status == NULL)
        return 0;
    return log->ops->consumer_status(log, why, len);
}

int natter_log_has_fanout(natter_log_t *log)
{
    return log->ops->fanout_poll != NULL;
}

size_t natter_log_fanout_poll(natter_log_t *log, natter_msg_t **head, size_t max, int timeout_ms)
{
    size_t n = log->ops->fanout_poll(log, head, max, timeout_ms);
    /* checked after the poll: a delay holds the batch just read, as a slow
     * fan-out thread would; a failure drops it */
    if (natter_fault_check(NATTER_FAULT_LOG_FANOUT_POLL) != 0) {
        natter_msg_free_list(*head);
        *head = NULL;
        return 0;
    }
    return n;
}

int natter_log_claims_at_ingest(natter_log_t *log)
{
    return log->ops->version >= 3 && log->ops->append_held != NULL;
}

int natter_log_append_held(natter_log_t *log, natter_msg_t *msg)
{
    int rc = natter_fault_check(NATTER_FAULT_LOG_APPEND_HELD);
    return rc != 0 ? rc : log->ops->append_held(log, msg);
}

void natter_log_release(natter_log_t *log, natter_msg_t *msg, int status)
{
    log->ops->release(log, msg, status);
    if (status == 0)
        natter_count(&natter_m()->messages_posted, 1);
}

int natter_log_append_existing(natter_log_t *log, natter_msg_t *msg)
{
    int rc = natter_fault_check(NATTER_FAULT_LOG_APPEND);
    if (rc == 0)
        rc = log->ops->append_existing(log, msg);
    if (rc == 0)
        natter_count(&natter_m()->messages_posted, 1);
    return rc;
}

int natter_log_publish(natter_log_t *log, natter_msg_t *ev)
{
    int rc = natter_fault_check(NATTER_FAULT_LOG_PUBLISH);
    return rc != 0 ? rc : log->ops->publish(log, ev);
}

size_t natter_log_ephemeral_poll(natter_log_t *log, natter_msg_t **head, size_t max, int timeout_ms)
{
    return log->ops->ephemeral_poll(log, head, max, timeout_ms);
}

int natter_log_has_dead_letters(natter_log_t *log)
{
    return log->ops->version >= 5 && log->ops->dead_letter != NULL;
}

int natter_log_dead_letter(natter_log_t *log, const natter_msg_t *msg, const char *reason)
{
    int rc = natter_fault_check(NATTER_FAULT_LOG_DEAD_LETTER);
    if (rc == 0)
        rc = log->ops->dead_letter(log, msg, reason);
    if (rc == 0) {
        natter_count(&natter_m()->dead_letters, 1);
        fprintf(stderr, "natter: dead letter: record %llu (chat %llu, partition %d, offset %lld) refused by the store: %s\n",
                (unsigned long long)msg->id, (unsigned long long)msg->chat_id, (int)msg->partition,
                (long long)msg->offset, reason);
    }
    return rc;
}

int64_t natter_log_stored_offset(natter_log_t *log, int32_t partition)
{
    if (log->ops->version < 6 || log->ops->stored_offset == NULL)
        return -1;
    return log->ops->stored_offset(log, partition);
}

int natter_log_fanout_wait_own(natter_log_t *log, uint64_t chat_id, int timeout_ms)
{
    if (log->ops->version < 7 || log->ops->fanout_wait_own == NULL)
        return 0;
    int rc = log->ops->fanout_wait_own(log, chat_id, timeout_ms);
    if (rc == NATTER_ETIMEDOUT)
        natter_count(&natter_m()->own_writes_wait_timeouts, 1);
    return rc;
}

int natter_log_has_idle(natter_log_t *log)
{
    return log->ops->version >= 8 && log->ops->idle != NULL;
}

void natter_log_idle(natter_log_t *log)
{
    if (natter_log_has_idle(log))
        log->ops->idle(log);
}

void natter_log_ids_after(natter_log_t *log, uint64_t id)
{
    if (log->ops->version >= 9 && log->ops->ids_after != NULL)
        log->ops->ids_after(log, id);
}

int natter_log_failed(natter_log_t *log, char *why, size_t len)
{
    return log->ops->version >= 10 && log->ops->failed != NULL && log->ops->failed(log, why, len);
}
