// Package pbx holds what the vendor feeds under it share. Each feed (3CX,
// Xelion, Voys/VoIPGRID, the generic webhook) is a package of its own that
// turns its vendor's messages into events.Signal values.
package pbx

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// FlexString is a JSON string that also accepts a number or null, because
// vendors send ids and numbers both ways (VoIPGRID account and user numbers,
// Xelion OIDs and call ids). Null is the empty string.
type FlexString string

// UnmarshalJSON accepts a string, a number or null.
func (f *FlexString) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case bytes.Equal(b, []byte("null")):
		*f = ""
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = FlexString(s)
	default:
		var n json.Number
		if err := json.Unmarshal(b, &n); err != nil {
			return fmt.Errorf("want a string or a number: %w", err)
		}
		*f = FlexString(n.String())
	}
	return nil
}
