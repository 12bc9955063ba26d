/* load_scenario — what each scenario builds and runs.
 *
 *   seed      one chat, 10 listeners (--listeners) and one sending user
 *   fanout    one chat, 1,000 listeners and one sending user
 *   rooms     10,000 chats (--rooms) of 5 members drawn from a pool of
 *             1,000 users (--users); every member listens and sends
 *   conns     --conns N WebSockets as N/T users with --tabs T sockets each,
 *             in rooms of --room-size users (default 5, the last room may
 *             be smaller), spread over every --target; every member posts
 *             and every socket of every member must get each message
 *   max       seed's chat; holds each rate for the first stage's duration
 *             (default 1000:5s), ×1.25 per step, until a rate misses twice
 *             in a row (fewer than 99.9% of the offered deliveries arrive
 *             or p99 passes 100 ms; a missed step is run once more); then
 *             two more steps split the gap between the last rate held and
 *             that one at its geometric middle (~6% apart at the end)
 *   sendonly  no setup and no listeners: posts to /chats/1/messages with a
 *             dummy token (measures the generator against bench's no-op
 *             server, which answers 202 to any POST)
 *   sendmax   sendonly stepped like max, held while 99.9% of the offered
 *             posts are answered 2xx with p99 ≤ 100 ms: the anchor's max
 */
#ifndef NATTER_LOAD_SCENARIO_H
#define NATTER_LOAD_SCENARIO_H

#include "load_run.h"

/* The stages a scenario runs when --stages is not given. NULL: unknown. */
const char *load_scenario_default_stages(const char *name);
/* Builds the scenario's users, chats and listeners, runs it, prints and
 * writes the reports. Returns the process exit status. */
int load_scenario_run(load_t *L, const load_stages_t *stages);

#endif
