// Package durable holds the one step every durable rename needs: a rename
// (or a create, or a removal) is on disk only once its folder has been
// fsynced as well.
package durable

import "os"

// SyncDir fsyncs the folder dir, making the renames, creations and removals
// in it durable. A failure to close the folder is reported too.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
