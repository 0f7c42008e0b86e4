// Package threecx follows calls on a 3CX V20 PBX through its Call Control API
// and reports every participant's progress as an events.Signal.
//
// The bridge is a client of the PBX: it takes an OAuth2 client-credentials
// token from POST /connect/token, reads a full GET /callcontrol snapshot, and
// then follows the /callcontrol/ws WebSocket. A WebSocket message carries only
// the path of the entity that changed, so every upsert is answered with a GET
// of that path. 3CX does not replay what a client missed, so every (re)connect
// and every gap in the message sequence is answered with a new snapshot that is
// diffed against the last known state: a participant that disappeared in the
// meantime still gets its end. With a Store, the known state survives a
// restart of the bridge, so the same holds for calls that ended while the
// bridge was down.
//
// One 3CX participant is one leg of a call (Signal.LegID is the participant id,
// Signal.CallID the PBX-wide callid). Only a participant in status Connected on
// an agent extension is an answer; Dialing and Ringing are ringing, and
// participants on queues, IVRs, route points and other non-extension DNs are
// reported with an empty Extension so that they keep the call alive without
// answering it. A participant whose other party is an extension (a call
// between two extensions, such as the consultation of an attended transfer)
// makes no signal: both of its legs would be agents, which the tracker would
// read as a transfer. It is reported once its party turns out to be outside
// the company. The source never decides what is a helpdesk event: the tracker
// does.
//
// Signal.Dialled is party_did, from whichever participant of the call has it
// filled; 3CX V20 was seen leaving it empty. Signal.Line is the DN of the
// trunk the call came through: the party_dn of a participant whose
// party_dn_type is Wexternalline (as captured), or a monitored trunk DN's
// own participant, which is read for this and reported as no leg. DID_MAP
// turns the line into the company number when there is no DID.
package threecx
