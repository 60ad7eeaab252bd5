package index

import "github.com/trailaudit/trail/client"

// docOf returns the search document of an entry: client.DocOf's, as the
// index and the client's check must derive the same one from an entry.
// Indexing reads the fields themselves (searchdoc.Read, in build); this is
// for the few entries a search reads back.
func docOf(entry []byte) (client.SearchDoc, error) {
	return client.DocOf(entry)
}
