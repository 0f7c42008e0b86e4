// Package route answers "which agent should take this caller?" for IVRs and
// call flows (GET /v1/route): the extension of the agent who last had the
// caller on the phone, or who owns the caller's open conversation in a
// helpdesk, so that a returning caller reaches the agent who already knows
// them ("sticky agent").
//
// A Router asks its resolvers in order (ROUTE_ORDER): History (the bridge's
// own record of who answered whom, free), Robin (the shop's customer
// endpoint for the caller's e-mail address, then ROBIN's conversations) and
// Chatwoot (contact search, then the contact's conversations). The first
// resolver in order that names an agent in the directory wins. The PBX waits
// on the answer, so:
//
//   - A look-up answers within Config.Timeout, whatever the helpdesks do.
//     Each resolver starts when the one before it found nothing, or has
//     taken a third of the timeout; at the deadline the best answer known
//     is given, and what has not answered is left out. The request goes on
//     in the background and fills the cache for the next call.
//   - Look-ups of one caller share one flight of requests, however many
//     arrive together, and answers (an agent, or none) are cached for
//     Config.CacheTTL. After a failed flight the caller is not asked about
//     again for a TTL either.
//   - While a helpdesk fails, the last agent it named is served, marked
//     stale, for up to Config.StaleMax.
//   - Requests to ROBIN go through the quota shared with call events
//     (presence priority) and the circuit breaker, so look-ups cannot push
//     the bridge over the helpdesk's limits; Chatwoot's contact search has
//     its own limiter sized to rack-attack's per-account throttle, and a 429
//     holds it back until the throttle's window ends.
package route
