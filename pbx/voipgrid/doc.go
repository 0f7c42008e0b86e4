// Package voipgrid receives the call notifications ("gespreksnotificaties")
// that Voys and other VoIPGRID-based platforms POST for every call, and
// journals them as events.Signal.
//
// The platform POSTs one JSON document per moment of a call: created (inbound
// only), ringing (possibly several times, as more devices ring), answered,
// warm transfer, cold transfer and ended. Voys documents created and ringing
// with examples; the names of the later statuses follow VoIPGRID's own call
// tracking library (cacofonisk: "in-progress" when a call is up, attended
// and blind transfers, hangup with a reason) and the research notes. They are
// accepted under a few spellings (see the status constants) until confirmed
// against a live platform.
//
// Notifications travel over HTTP and may arrive out of order or twice. The
// handler translates each one on its own and remembers nothing between them:
// every signal carries the notification's own timestamp, and the tracker
// (package events), the one owner of call state, places what arrives late
// by it.
package voipgrid
