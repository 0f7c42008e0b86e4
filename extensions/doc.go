// Package extensions is the agent directory: it says which identifiers a PBX
// reports are agents, and which ROBIN (Agent Inbox) phone extension each one is.
//
// The directory is built from two optional inputs, passed in by the caller
// (the package does not read the environment):
//
// EXTENSIONS is a comma-separated list. A bare entry maps a PBX id to the
// ROBIN extension of the same name; "pbx:robin" renames, so
// "201,202,1001:203" makes PBX id 1001 ROBIN extension 203. White space around
// entries and around the colon is ignored and one trailing comma is allowed.
// An empty entry elsewhere, an entry with an empty side (":203", "201:"), more
// than one colon, and the same PBX id twice are errors. Spec entries apply to
// every source.
//
// EXTENSIONS_FILE names a CSV file whose first row is a header with the
// columns pbx_id, robin_extension, name and email, and optionally source, in
// any order and in any letter case. Rows whose line starts with "#" and blank
// rows are skipped; fields may be quoted; a UTF-8 byte order mark and CRLF line
// ends are accepted; white space around fields is ignored. An empty
// robin_extension means "the same as pbx_id", an empty source means "any
// source", and a non-empty email must be an address with an "@". The same
// (source, pbx_id) twice in the file is an error.
//
// When both are set their entries merge: a file row may repeat an EXTENSIONS
// entry to add a name and e-mail address, but mapping the same PBX id to two
// different ROBIN extensions is an error that names both places. When neither
// is set the directory is open: every non-empty identifier is an agent whose
// ROBIN extension is the identifier itself.
//
// Every problem is reported at once (errors.Join), each error starting with
// its place: `EXTENSIONS entry 3 "1001:"` or `extensions.csv line 7`.
package extensions
