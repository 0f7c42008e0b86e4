package extensions

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
)

// The columns of an EXTENSIONS_FILE.
const (
	colPBXID  = "pbx_id"
	colRobin  = "robin_extension"
	colName   = "name"
	colEmail  = "email"
	colSource = "source"
)

// wantHeader describes the header row in error messages.
const wantHeader = "want pbx_id,robin_extension,name,email and optionally source"

// columns holds the index of each column in a row; -1 when absent.
type columns struct{ pbx, robin, name, email, source int }

// parseCSV parses an EXTENSIONS_FILE named name, its fields separated by
// ',' or, as the header line shows, ';' or tabs. It returns the valid
// entries and one error per bad row, each starting with `<name> line <n>`.
// A header problem stops parsing, since no row can be read without it.
func parseCSV(name string, data []byte) ([]entry, []error) {
	data = bytes.TrimPrefix(data, []byte("\ufeff")) // spreadsheets write a BOM
	r := csv.NewReader(bytes.NewReader(data))
	r.Comma = separator(data)
	r.Comment = '#'
	r.FieldsPerRecord = -1 // checked here, with a better message

	var (
		cols    *columns
		ncols   int
		entries []entry
		errs    []error
		seen    = make(map[key]int) // (source, pbx_id) → line
	)
	for {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if !errors.As(err, &pe) {
				return entries, append(errs, fmt.Errorf("%s: %w", name, err))
			}
			errs = append(errs, fmt.Errorf("%s line %d, column %d: %w", name, pe.Line, pe.Column, pe.Err))
			if cols == nil {
				return nil, errs // the header itself is unreadable
			}
			continue
		}
		line, _ := r.FieldPos(0)
		if blank(rec) {
			continue
		}
		if cols == nil {
			c, err := parseHeader(rec)
			if err != nil {
				return nil, append(errs, fmt.Errorf("%s line %d: %w", name, line, err))
			}
			cols, ncols = c, len(rec)
			continue
		}
		place := fmt.Sprintf("%s line %d", name, line)
		if len(rec) != ncols {
			errs = append(errs, fmt.Errorf("%s: %d %s, the header has %d", place, len(rec), plural(len(rec), "field"), ncols))
			continue
		}
		a, err := parseRow(rec, cols)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", place, err))
			continue
		}
		k := key{a.Source, a.PBXID}
		if first, dup := seen[k]; dup {
			if a.Source == "" {
				errs = append(errs, fmt.Errorf("%s: pbx_id %q already on line %d", place, a.PBXID, first))
			} else {
				errs = append(errs, fmt.Errorf("%s: pbx_id %q with source %q already on line %d", place, a.PBXID, a.Source, first))
			}
			continue
		}
		seen[k] = line
		entries = append(entries, entry{Agent: a, place: place})
	}
	if cols == nil {
		errs = append(errs, fmt.Errorf("%s: no header row; %s", name, wantHeader))
	}
	return entries, errs
}

// separator is the field separator of the header line (the first line that
// is neither blank nor a comment): ',' unless the line holds more ';' or
// tabs outside quotes. Spreadsheets in locales whose decimal separator is a
// comma (Excel and LibreOffice in Dutch, German, French) save "CSV" with ';'.
func separator(data []byte) rune {
	for line := range bytes.Lines(data) {
		if t := bytes.TrimSpace(line); len(t) == 0 || line[0] == '#' {
			continue
		}
		counts := map[rune]int{}
		quoted := false
		for _, c := range string(line) {
			switch {
			case c == '"':
				quoted = !quoted
			case !quoted && (c == ',' || c == ';' || c == '\t'):
				counts[c]++
			}
		}
		best := ','
		for _, c := range []rune{';', '\t'} {
			if counts[c] > counts[best] {
				best = c
			}
		}
		return best
	}
	return ','
}

// parseHeader maps column names (trimmed, any letter case) to positions.
// The four main columns are required; source is optional; anything else is
// an error, since it is most likely a misspelt name.
func parseHeader(rec []string) (*columns, error) {
	c := &columns{-1, -1, -1, -1, -1}
	slots := map[string]*int{colPBXID: &c.pbx, colRobin: &c.robin, colName: &c.name, colEmail: &c.email, colSource: &c.source}
	var errs []string
	known := 0
	for i, h := range rec {
		h = strings.ToLower(strings.TrimSpace(h))
		slot, ok := slots[h]
		switch {
		case h == "":
			errs = append(errs, fmt.Sprintf("column %d has no name", i+1))
		case !ok:
			errs = append(errs, fmt.Sprintf("unknown column %q", h))
		case *slot >= 0:
			errs = append(errs, fmt.Sprintf("column %q appears twice", h))
		default:
			*slot = i
			known++
		}
	}
	if known == 0 {
		return nil, fmt.Errorf("the first row is not a header; %s", wantHeader)
	}
	for _, name := range []string{colPBXID, colRobin, colName, colEmail} {
		if *slots[name] < 0 {
			errs = append(errs, fmt.Sprintf("no %q column", name))
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("header: %s; %s", strings.Join(errs, ", "), wantHeader)
	}
	return c, nil
}

// parseRow turns one data row into an agent, reporting its first problem.
func parseRow(rec []string, c *columns) (Agent, error) {
	field := func(i int) string {
		if i < 0 {
			return ""
		}
		return strings.TrimSpace(rec[i])
	}
	a := Agent{
		PBXID:     field(c.pbx),
		Extension: field(c.robin),
		Name:      field(c.name),
		Email:     field(c.email),
		Source:    strings.ToLower(field(c.source)),
	}
	if a.PBXID == "" {
		return Agent{}, fmt.Errorf("pbx_id is empty")
	}
	if err := checkID(colPBXID, a.PBXID); err != nil {
		return Agent{}, err
	}
	if a.Extension == "" {
		a.Extension = a.PBXID
	} else if err := checkID(colRobin, a.Extension); err != nil {
		return Agent{}, err
	}
	if err := checkName(a.Name); err != nil {
		return Agent{}, err
	}
	if err := checkEmail(a.Email); err != nil {
		return Agent{}, err
	}
	if err := checkSource(a.Source); err != nil {
		return Agent{}, err
	}
	return a, nil
}

// blank reports whether every field of a row is empty or white space, as in
// a line of spaces or a spreadsheet's empty row (",,,").
func blank(rec []string) bool {
	for _, f := range rec {
		if strings.TrimSpace(f) != "" {
			return false
		}
	}
	return true
}

// plural returns word, with an "s" unless n is 1.
func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}
