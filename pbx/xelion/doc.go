// Package xelion follows a Xelion PBX over its API WebSocket and journals
// an events.Signal for every call event.
//
// The bridge is a client of the Xelion server. It logs in with an admin
// account (POST me/login; every request carries "Authorization: xelion
// <token>"), renews the session token before it expires (POST me/renew with
// the renewal token) and logs in again when the server answers 401. For
// every (re)connect it asks for a fresh one-off WebSocket URL (POST
// me/websocket), opens it and subscribes to the call notifications:
// newCallEvent, callConnectedEvent, callTransferredEvent, callHungUpEvent,
// missedCallEvent and channelHungUpEvent (the first four and the channel
// hang-up are sent to admin sessions only).
//
// What Xelion documents, and what this package assumes:
//   - Login, renewal, the WebSocket request and the subscription messages
//     follow Xelion's API user guide.
//   - The CallEvent notification is documented only in part: callId,
//     callerPhoneNumber, calleePhoneNumber, initiation, date and duration are
//     confirmed; the caller's and callee's names and addressables
//     (callerName, calleeName, callerAddressable, calleeAddressable, each
//     addressable {oid, commonName, objectType}) are read when present. A
//     party's identifier, reported as the signal's Extension, is its
//     addressable's OID when the event carries one, else its phone number;
//     the directory maps either.
//   - callTransferredEvent carries, per Xelion's NotificationType table, a
//     CallTransferredEvent object whose fields are not published. The
//     source reads it in the CallEvent shape (the transferred call's callId
//     and the parties after the transfer) or in an assumed shape naming the
//     call handed over and the call it joins (see TransferEvent). One it
//     cannot read gives a transferred signal with cause
//     events.CauseUnconfirmed on every answered outgoing call to an
//     identified party (see translator.unreadable).
//   - After every (re)connect the source reads the running calls (GET
//     communications/active_channels, documented) and ends the calls it
//     holds live that no longer run. That an active channel's callId is the
//     callId of the call events is assumed; resync.go says what is
//     documented and how the source guards against the assumption failing.
//
// Xelion documents that an attended transfer (customer C talks to A, A calls
// B, A transfers C to B) produces hang-ups for C→A, A→B, A→B again and, at
// the very end, C→B. None of these but the last ends the customer's call.
// The source decides none of that: it translates each Xelion call id on its
// own, keeping per call id the legs it has seen (one per local party, with a
// generation so that a party that gets the call back has a new leg). An
// outgoing call to a party identified by an addressable names that party
// (events.Signal.Consulting), and the tracker decides whether it is a
// consultation of a customer call, joins the Xelion calls of one customer
// call, and ends that call when none of its legs is left. Channel hang-ups
// (a losing phone of a ring group, a step of line hunting) end a leg.
package xelion
