package extensions

import (
	"fmt"
	"strings"
)

// specName is the name the EXTENSIONS spec has in error messages.
const specName = "EXTENSIONS"

// parseSpec parses an EXTENSIONS spec ("201,202,1001:203") into unscoped
// entries. It returns the valid entries and one error per bad entry, each
// naming the entry's position (1-based) and text.
func parseSpec(spec string) ([]entry, []error) {
	if strings.TrimSpace(spec) == "" {
		return nil, nil
	}
	parts := strings.Split(spec, ",")
	var (
		entries []entry
		errs    []error
		seen    = make(map[string]int, len(parts)) // PBX id → entry number
	)
	for i, raw := range parts {
		n := i + 1
		item := strings.TrimSpace(raw)
		place := fmt.Sprintf("%s entry %d %q", specName, n, item)
		if item == "" {
			if n == len(parts) {
				continue // a trailing comma
			}
			errs = append(errs, fmt.Errorf("%s: empty entry", place))
			continue
		}
		a, err := parseSpecEntry(item)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", place, err))
			continue
		}
		if first, dup := seen[a.PBXID]; dup {
			errs = append(errs, fmt.Errorf("%s: PBX id %q already in entry %d", place, a.PBXID, first))
			continue
		}
		seen[a.PBXID] = n
		entries = append(entries, entry{Agent: a, place: place})
	}
	return entries, errs
}

// parseSpecEntry parses one trimmed, non-empty entry: "201" or "1001:203".
func parseSpecEntry(item string) (Agent, error) {
	pbx, robin, renamed := strings.Cut(item, ":")
	pbx, robin = strings.TrimSpace(pbx), strings.TrimSpace(robin)
	switch {
	case strings.Contains(robin, ":"):
		return Agent{}, fmt.Errorf(`more than one ":"`)
	case pbx == "":
		return Agent{}, fmt.Errorf("PBX id is empty")
	case renamed && robin == "":
		return Agent{}, fmt.Errorf("ROBIN extension is empty")
	}
	if !renamed {
		robin = pbx
	}
	if err := checkID("PBX id", pbx); err != nil {
		return Agent{}, err
	}
	if err := checkID("ROBIN extension", robin); err != nil {
		return Agent{}, err
	}
	return Agent{PBXID: pbx, Extension: robin}, nil
}
