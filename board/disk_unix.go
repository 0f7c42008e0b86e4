//go:build unix

package board

import "syscall"

// DiskSpace returns the free and total bytes of the file system holding
// dir, for the journal's line on the board; ok is false when it cannot be
// read.
func DiskSpace(dir string) (free, total uint64, ok bool) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, 0, false
	}
	return uint64(st.Bavail) * uint64(st.Bsize), uint64(st.Blocks) * uint64(st.Bsize), true
}
