package chatwoot

import (
	"fmt"
	"strings"
	"time"

	"github.com/voipbridge/voipbridge/events"
)

// noteTime is how a note writes a moment (in the sink's time zone).
const noteTime = "Mon 2 Jan 15:04"

// note is the private note for one event: answered by whom, transferred to
// whom, ended after how long, or missed (who rang, for how long).
func (s *Sink) note(env events.Envelope, rec caller) string {
	c, e := env.Call, env.Event
	at := func(t time.Time) string {
		if t.IsZero() {
			t = env.Created
		}
		return t.In(s.o.Location).Format(noteTime)
	}
	inbound := e.Direction != events.DirectionLabel(events.Outbound)
	agent := s.agentLabel(env.Source, e.PhoneExtension)
	var b strings.Builder
	switch e.Type {
	case events.EventAnswered:
		if inbound {
			fmt.Fprintf(&b, "Call from %s%s answered by %s at %s.", c.Customer, to(c.DID), agent, at(c.Answered))
		} else {
			fmt.Fprintf(&b, "%s called %s%s; answered at %s.", agent, c.Customer, from(c.DID), at(c.Answered))
		}
	case events.EventTransfer:
		b.WriteString("Call transferred")
		if rec.Before != "" && rec.Before != e.PhoneExtension {
			fmt.Fprintf(&b, " from %s", s.agentLabel(env.Source, rec.Before))
		}
		fmt.Fprintf(&b, " to %s at %s.", agent, at(env.Created))
	case events.EventDisconnected:
		rang := ""
		if !c.Started.IsZero() && c.Ended.After(c.Started) {
			rang = " for " + span(c.Ended.Sub(c.Started))
		}
		switch {
		case c.Missed && inbound:
			fmt.Fprintf(&b, "Missed call from %s%s at %s; ", c.Customer, to(c.DID), at(c.Ended))
			if len(c.Rang) == 0 {
				b.WriteString("no phone rang.")
			} else {
				fmt.Fprintf(&b, "rang %s%s.", s.rangLabels(env.Source, c.Rang), rang)
			}
		case c.Missed:
			fmt.Fprintf(&b, "%s called %s%s at %s; not answered", agent, c.Customer, from(c.DID), at(c.Ended))
			if rang != "" {
				b.WriteString(" (rang" + rang + ")")
			}
			b.WriteString(".")
		default:
			fmt.Fprintf(&b, "Call ended at %s", at(c.Ended))
			if !c.Answered.IsZero() && c.Ended.After(c.Answered) {
				fmt.Fprintf(&b, " after %s", span(c.Ended.Sub(c.Answered)))
				if total := c.Ended.Sub(c.Started); !c.Started.IsZero() && total-c.Ended.Sub(c.Answered) >= time.Second {
					fmt.Fprintf(&b, " (%s with ringing)", span(total))
				}
			}
			if e.PhoneExtension != "" {
				fmt.Fprintf(&b, "; last with %s", agent)
			}
			b.WriteString(".")
		}
	}
	return b.String()
}

func to(did string) string {
	if did == "" {
		return ""
	}
	return " to " + did
}

func from(line string) string {
	if line == "" {
		return ""
	}
	return " from " + line
}

// span writes a duration to the second: "45s", "3m 12s", "1h 2m 3s".
func span(d time.Duration) string {
	d = d.Round(time.Second)
	h, m, sec := int(d/time.Hour), int(d%time.Hour/time.Minute), int(d%time.Minute/time.Second)
	switch {
	case h > 0:
		return fmt.Sprintf("%dh %dm %ds", h, m, sec)
	case m > 0:
		return fmt.Sprintf("%dm %ds", m, sec)
	}
	return fmt.Sprintf("%ds", sec)
}

// agentLabel names the agent with this ROBIN extension: "Petra (201)", or
// the extension when the directory has no name.
func (s *Sink) agentLabel(source, ext string) string {
	if s.o.Agents != nil {
		if a, ok := s.o.Agents.ByExtension(source, ext); ok && a.Name != "" {
			return a.Name + " (" + ext + ")"
		}
	}
	return ext
}

// rangLabels names the PBX extensions that rang.
func (s *Sink) rangLabels(source string, pbxIDs []string) string {
	out := make([]string, len(pbxIDs))
	for i, id := range pbxIDs {
		out[i] = id
		if s.o.Agents != nil {
			if a, ok := s.o.Agents.Lookup(source, id); ok && a.Name != "" {
				out[i] = a.Name + " (" + id + ")"
			}
		}
	}
	return strings.Join(out, ", ")
}
