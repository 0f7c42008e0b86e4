package pbx

import (
	"encoding/json"
	"testing"
)

func TestFlexString(t *testing.T) {
	for in, want := range map[string]string{`"abc"`: "abc", `12345`: "12345", `null`: "", ` "x" `: "x", `1.5e3`: "1.5e3"} {
		var f FlexString
		if err := json.Unmarshal([]byte(in), &f); err != nil || string(f) != want {
			t.Errorf("%s: %q, %v; want %q", in, f, err, want)
		}
	}
	for _, in := range []string{`true`, `{}`, `[1]`} {
		var f FlexString
		if err := json.Unmarshal([]byte(in), &f); err == nil {
			t.Errorf("%s: accepted as %q", in, f)
		}
	}
}
