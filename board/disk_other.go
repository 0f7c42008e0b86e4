//go:build !unix

package board

// DiskSpace reports nothing on systems without statfs.
func DiskSpace(string) (free, total uint64, ok bool) { return 0, 0, false }
