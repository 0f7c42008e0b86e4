package extensions

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// Agent is one entry of the directory: a PBX identifier and the ROBIN agent
// it belongs to. All fields are trimmed of surrounding white space.
type Agent struct {
	// PBXID is the identifier as the PBX reports it (an extension number, a
	// SIP user, a DN); it is case-sensitive.
	PBXID string
	// Extension is the agent's ROBIN PhoneExtension; it is never empty.
	Extension string
	// Name and Email describe the agent; either may be empty. A non-empty
	// Email contains exactly one "@".
	Name, Email string
	// Source scopes the entry to one source ("sip", "threecx", ...), in lower
	// case; "" means the entry applies to every source.
	Source string
}

// Directory maps PBX identifiers to agents. It is safe for concurrent use:
// Lookup, Agents, Len and Open always see one complete table, either the one
// before a Reload or the one after it, never a mixture. The zero Directory is
// open (see Open); use Load to build one from configuration.
type Directory struct {
	mu sync.Mutex // serialises Reload, so the last Reload to return is the table in use
	t  atomic.Pointer[table]
}

// key addresses one entry: source "" holds the entries for every source.
type key struct{ source, id string }

// table is one immutable generation of the directory.
type table struct {
	open   bool
	agents map[key]Agent
	sorted []Agent // all entries by PBXID, then Source ("" first)
}

// maxErrors bounds how many problems one Load reports, so that a wrong file
// (a binary, another CSV) gives a readable error rather than thousands of lines.
const maxErrors = 100

// Load builds a directory from an EXTENSIONS spec and the path of an
// EXTENSIONS_FILE CSV ("" for none), which it reads from disk. When spec is
// blank and file is "" the directory is open. On any problem it returns a nil
// Directory and an error that joins every problem found, each starting with
// its place.
func Load(spec, file string) (*Directory, error) {
	t, err := load(spec, file)
	if err != nil {
		return nil, err
	}
	d := &Directory{}
	d.t.Store(t)
	return d, nil
}

// Reload reads spec and file as Load does and, if they are valid, atomically
// replaces the directory's table with the new one: lookups running at the
// same time see either the old table or the new one. On error the old table
// stays in use and the error lists every problem found.
func (d *Directory) Reload(spec, file string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	t, err := load(spec, file)
	if err != nil {
		return fmt.Errorf("extensions not reloaded, previous table kept: %w", err)
	}
	d.t.Store(t)
	return nil
}

// Lookup returns the agent for the PBX identifier pbxID reported by source.
// Surrounding white space is ignored in both; pbxID is otherwise
// case-sensitive and source is not. An entry scoped to source wins over an
// unscoped one. An open directory returns an agent whose Extension is the
// trimmed pbxID for any non-empty pbxID. Lookup does not allocate (except to
// lower-case a source name that contains upper-case letters).
func (d *Directory) Lookup(source, pbxID string) (Agent, bool) {
	id := strings.TrimSpace(pbxID)
	if id == "" {
		return Agent{}, false
	}
	t := d.t.Load()
	if t == nil || t.open {
		return Agent{PBXID: id, Extension: id}, true
	}
	if src := normSource(source); src != "" {
		if a, ok := t.agents[key{src, id}]; ok {
			return a, true
		}
	}
	a, ok := t.agents[key{"", id}]
	return a, ok
}

// Open reports whether the directory is open: built with neither an
// EXTENSIONS spec nor a file, so that every identifier maps to itself.
func (d *Directory) Open() bool {
	t := d.t.Load()
	return t == nil || t.open
}

// Agents returns the entries that apply to source (scoped to it or
// unscoped), one per PBX id, sorted by PBXID; where both exist for a PBX id
// the scoped entry is returned, as Lookup would. Source "" returns the
// unscoped entries. An open directory returns nil, since it cannot enumerate
// its agents. The caller owns the returned slice.
func (d *Directory) Agents(source string) []Agent {
	t := d.t.Load()
	if t == nil || t.open {
		return nil
	}
	src := normSource(source)
	var out []Agent
	for _, a := range t.sorted {
		if a.Source != "" && a.Source != src {
			continue
		}
		// Sorted by PBXID then Source, so an unscoped entry comes right
		// before the scoped entry for the same id, which replaces it.
		if n := len(out); n > 0 && out[n-1].PBXID == a.PBXID {
			out[n-1] = a
			continue
		}
		out = append(out, a)
	}
	return out
}

// Len returns the number of entries in the directory, over all sources; an
// open directory has none.
func (d *Directory) Len() int {
	t := d.t.Load()
	if t == nil {
		return 0
	}
	return len(t.agents)
}

// normSource makes a source name comparable: trimmed and lower case.
// strings.ToLower returns its argument unchanged, without allocating, when it
// has no upper-case letters.
func normSource(s string) string {
	return strings.ToLower(strings.TrimSpace(s))
}

// load reads the inputs and compiles them into a table.
func load(spec, file string) (*table, error) {
	if strings.TrimSpace(spec) == "" && file == "" {
		return &table{open: true}, nil
	}
	var data []byte
	var readErr error
	if file != "" {
		data, readErr = os.ReadFile(file)
		if readErr != nil {
			readErr = fmt.Errorf("read extensions file: %w", readErr)
		}
	}
	return compile(spec, file, data, readErr)
}

// compile parses spec and, unless file is "" or readErr is set, the file's
// data, and merges them. Every problem found is returned, joined.
func compile(spec, file string, data []byte, readErr error) (*table, error) {
	entries, errs := parseSpec(spec)
	specCount := len(entries)
	if readErr != nil {
		errs = append(errs, readErr)
	} else if file != "" {
		fileEntries, fileErrs := parseCSV(file, data)
		entries = append(entries, fileEntries...)
		errs = append(errs, fileErrs...)
	}

	t := &table{agents: make(map[key]Agent, len(entries))}
	places := make(map[key]string, specCount)
	for i, e := range entries {
		k := key{e.Source, e.PBXID}
		if i < specCount {
			// Spec entries are unscoped and unique among themselves.
			t.agents[k] = e.Agent
			places[k] = e.place
			continue
		}
		// A file entry can only collide with a spec entry: duplicates
		// inside the file were reported and dropped by parseCSV.
		if prev, ok := t.agents[k]; ok && prev.Extension != e.Extension {
			errs = append(errs, fmt.Errorf("%s: pbx_id %q maps to ROBIN extension %q, but %s maps it to %q",
				e.place, e.PBXID, e.Extension, places[k], prev.Extension))
			continue
		}
		t.agents[k] = e.Agent // the file row adds name and e-mail to a spec entry
	}
	if len(errs) > 0 {
		if len(errs) > maxErrors {
			more := len(errs) - maxErrors
			errs = append(errs[:maxErrors:maxErrors], fmt.Errorf("%d more problems not shown", more))
		}
		return nil, errors.Join(errs...)
	}

	t.sorted = make([]Agent, 0, len(t.agents))
	for _, a := range t.agents {
		t.sorted = append(t.sorted, a)
	}
	slices.SortFunc(t.sorted, func(a, b Agent) int {
		return cmp.Or(strings.Compare(a.PBXID, b.PBXID), strings.Compare(a.Source, b.Source))
	})
	return t, nil
}

// entry is one parsed mapping and the place it came from, so that a conflict
// can name both places.
type entry struct {
	Agent
	place string
}
