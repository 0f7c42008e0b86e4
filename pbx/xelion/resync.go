package xelion

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/voipbridge/voipbridge/events"
	"github.com/voipbridge/voipbridge/pbx"
)

// Reading the running calls after a (re)connect.
//
// Xelion does not replay the notifications a client missed while its
// WebSocket was down, so a hang-up in that time never arrives. What Xelion
// documents for catching up is the list of active channels: GET
// communications/active_channels "returns the current active channels on
// the PBX", each with the callId that "identifies the call that is connected
// with the channel" (channels of one call share it). The answer is Xelion's
// list answer, {"data":[{"object":{...}}, ...], "meta":{...}}, with
// documented fields callId, channelId, state, name, organisationName, role,
// phone, phoneUser, twinChannel and parkingSlot. The request takes no
// parameters, so the answer is taken to be the whole list (no paging).
//
// Assumed, not documented:
//   - that the callId of an active channel is the callId of the CallEvent
//     notifications. Xelion does not say so, and no example shows both
//     (the active channels example has an Asterisk channel name,
//     "SIP/wes-000001d8", as its callId). The source guards
//     against the assumption failing: a list of running calls that names
//     none of the calls the source has ever seen, while it holds live
//     calls, is not used (see translator.gone);
//   - that an admin session sees the channels of the whole tenant, as it
//     gets the call events of the whole tenant;
//   - that a channel's presence in the list means its call runs, whatever
//     its state (only CONNECTED appears in Xelion's example).
//
// GET channels (the phone channels, with addressables and linked channels)
// carries no callId, and activeChannelEvent (channel added or removed, with a
// version for resetting a client's list) would need the whole channel list
// kept in step; neither is used.

// ActiveChannel is one channel of a running call, an entry of the answer to
// GET communications/active_channels. Only the fields the source reads are
// decoded.
type ActiveChannel struct {
	// CallID groups the channels of one call ("notNull" in Xelion's model).
	CallID pbx.FlexString `json:"callId"`
	// ChannelID identifies the channel.
	ChannelID pbx.FlexString `json:"channelId"`
	// State is the channel's call state, e.g. CONNECTED.
	State string `json:"state"`
	// Role is the channel's part in the call (caller, callee, conference,
	// listening).
	Role string `json:"role"`
}

// activeChannels is the list answer of GET communications/active_channels.
type activeChannels struct {
	Data *[]struct {
		Object *ActiveChannel `json:"object"`
	} `json:"data"`
}

// DecodeActiveChannels returns the call ids that have at least one channel
// in an answer to GET communications/active_channels. An answer without its
// data list, or with an entry that has no call id, is an error: calls would
// be ended on a list that was not read whole.
func DecodeActiveChannels(data []byte) (map[string]bool, error) {
	var a activeChannels
	if err := json.Unmarshal(data, &a); err != nil {
		return nil, fmt.Errorf("active channels: %w", err)
	}
	if a.Data == nil {
		if len(bytes.TrimSpace(data)) == 0 {
			return nil, errors.New("active channels: empty answer")
		}
		return nil, errors.New("active channels: answer has no data list")
	}
	running := make(map[string]bool, len(*a.Data))
	for i, e := range *a.Data {
		if e.Object == nil {
			return nil, fmt.Errorf("active channels: entry %d has no object", i)
		}
		id := strings.TrimSpace(string(e.Object.CallID))
		if id == "" {
			return nil, fmt.Errorf("active channels: entry %d has no callId", i)
		}
		running[id] = true
	}
	return running, nil
}

// Results of reading the running calls, the label of the resync counter.
const (
	resyncOK        = "ok"
	resyncError     = "error"
	resyncUnmatched = "unmatched"
)

// resync reads the calls running on the PBX and journals the end of every
// call the translator holds live that is no longer among them, before any
// message of the new connection is read. A list that cannot be read is
// logged and counted and changes nothing: the next reconnect tries again,
// and meanwhile the tracker's timeout ends what is stale. Only a journal
// failure is an error; the signals stay pending, as for a message.
func (s *Source) resync(ctx context.Context) error {
	running, err := s.runningCalls(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		s.m.resync.WithLabelValues(resyncError).Inc()
		s.resyncProblem(err.Error(), "xelion running calls not read; calls that ended while disconnected end at the tracker's timeout", "err", err)
		return nil
	}
	sigs, ended, ok := s.tr.gone(running)
	if !ok {
		s.m.resync.WithLabelValues(resyncUnmatched).Inc()
		s.resyncProblem(resyncUnmatched, "xelion running calls name none of the calls the source knows; not used, calls that ended while disconnected end at the tracker's timeout",
			"running", len(running))
		return nil
	}
	s.m.resync.WithLabelValues(resyncOK).Inc()
	if s.resyncLast != "" {
		s.log.Info("xelion running calls read again")
		s.resyncLast = ""
	}
	if ended > 0 {
		s.m.resyncEnded.Add(float64(ended))
		s.log.Info("xelion calls ended while disconnected", "calls", ended)
	}
	s.pending = append(s.pending, sigs...)
	return s.flush(ctx)
}

// resyncProblem logs a failed resync when it differs from the last one, so
// that a connection that keeps dropping does not repeat the same line.
func (s *Source) resyncProblem(key, msg string, args ...any) {
	if key == s.resyncLast {
		return
	}
	s.resyncLast = key
	s.log.Warn(msg, args...)
}

// runningCalls asks the PBX for its active channels. A 401 means the
// session is gone: log in again once and retry.
func (s *Source) runningCalls(ctx context.Context) (map[string]bool, error) {
	for attempt := 0; ; attempt++ {
		tok, err := s.sess.Token(ctx)
		if err != nil {
			return nil, err
		}
		data, err := s.api.get(ctx, "active channels", "communications/active_channels", tok)
		if errors.Is(err, errAuth) && attempt == 0 {
			s.sess.Invalidate(tok)
			continue
		}
		if err != nil {
			return nil, err
		}
		return DecodeActiveChannels(data)
	}
}

// gone ends the live legs (ringing, answered or handed over) of the Xelion
// calls that are not among running, the call ids the PBX has channels for,
// with cause CauseGone; the tracker ends a customer call when no leg of it
// is left. It returns the signals and the number of Xelion calls ended.
// (A customer call the tracker joined from several Xelion calls loses the
// legs of the ids that stopped running: after an attended transfer that
// carries on under the consultation's id, the leg handed over under the
// original id ends, and with it the call, a late end rather than a missed
// one.)
//
// ok is false, and nothing changes, when running is not empty and names
// none of the calls the translator knows (live or ended) while it has live
// calls to end: then the PBX's call ids and the notifications' are not
// comparable (see the top of this file), or every call the source knew
// ended and others began while it was away; either way the tracker's
// timeout is the safe end. An empty list is used: no call runs.
func (t *translator) gone(running map[string]bool) (sigs []events.Signal, ended int, ok bool) {
	now := t.now()
	t.gc(now)
	known := false
	var over []*xcall
	for id, x := range t.xcalls {
		switch {
		case running[id]:
			known = true
		case x.live():
			over = append(over, x)
		}
	}
	if len(over) == 0 {
		return nil, 0, true
	}
	if len(running) > 0 && !known {
		return nil, 0, false
	}
	slices.SortFunc(over, func(a, b *xcall) int { return cmp.Compare(a.id, b.id) })
	for _, x := range over {
		e := emitter{key: SourceName + "|gone|" + x.id, at: now}
		x.seen = now
		for _, k := range slices.Sorted(maps.Keys(x.legs)) {
			l := x.legs[k]
			if l.state == events.Ended {
				continue
			}
			l.hung = true
			e.leg(x, l, l.p, events.Ended, CauseGone)
			// The leg alone, by its identity: a consultation's end, or the
			// extension's, must not end what the tracker joined to it.
			e.out[len(e.out)-1].Extension, e.out[len(e.out)-1].Consulting = "", ""
		}
		sigs = append(sigs, e.out...)
	}
	return sigs, len(over), true
}
