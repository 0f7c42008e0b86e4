// Package presence answers "is anyone online on this channel?" for IVRs and
// call flows (GET /v1/presence), from a cache in front of ROBIN's presence
// endpoint.
//
// Every request to ROBIN costs quota (3/s, 180/min, 10 000/h and 100 000/day
// per subscription, shared with call events), while a busy IVR may ask for
// every caller. The cache keeps ROBIN traffic to a minimum and bounds how
// long a caller waits:
//
//   - Answers are kept for Config.TTL per (channel, referrer). Look-ups of a
//     key while a request for it is in flight share that request: one
//     request to ROBIN however many callers wait.
//   - A key is asked at most once per TTL whether ROBIN answered or failed:
//     after a failed request the key is not asked again for TTL (or for the
//     Retry-After ROBIN sent, if longer).
//   - A look-up waits at most Config.Timeout for quota and ROBIN. When ROBIN
//     fails, the quota is spent, the breaker is open or the wait runs out, the
//     last known answer is served, marked stale, for up to Config.StaleMax
//     after ROBIN gave it; with nothing known, Config.Fallback decides
//     (Online, Offline, or an error). A request that outlives the caller's
//     wait goes on in the background and refreshes the cache.
//   - ROBIN's 400 and 404 (it does not know the channel or referrer) are
//     answers too: cached for Config.NegativeTTL and passed on as "not found"
//     with ROBIN's reason, not asked again on every call.
//   - Keys in Config.Warm are refreshed in the background shortly before
//     they expire, so a look-up of them does not wait for ROBIN.
//
// Requests go through the quota limiter (robin.PriorityPresence) and the
// circuit breaker shared with call events. The API key never reaches a log
// line, an error, an answer or a metric: ROBIN's errors are redacted by the
// client, and the cache redacts again with Options.Redact whatever text it
// passes on.
package presence
