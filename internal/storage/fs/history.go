package fs

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
)

// The checkpoint history is an append-only file of records, one per signed
// checkpoint: a 4-byte big-endian body length, the CRC-32C of the body, then
// the body (the signed note). A record cut short by a crash is a torn tail.

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

const recordHeader = 8

// maxRecord bounds a history record: a signed note is a few hundred bytes,
// so anything near this is damage, not data.
const maxRecord = 1 << 20

func appendRecord(dst, body []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(body)))
	dst = binary.BigEndian.AppendUint32(dst, crc32.Checksum(body, castagnoli))
	return append(dst, body...)
}

var (
	errTornRecord    = errors.New("record cut short")
	errCorruptRecord = errors.New("record checksum mismatch")
)

// parseRecords splits b into record bodies. It stops at the first record
// that is incomplete or fails its checksum: bodies holds the records before
// it, n the bytes they span, and err says why it stopped early (nil if n ==
// len(b)). A checksum failure in the last record is what a torn write looks
// like; one followed by more data is damage.
func parseRecords(b []byte) (bodies [][]byte, n int, err error) {
	for n < len(b) {
		if len(b)-n < recordHeader {
			return bodies, n, errTornRecord
		}
		l := int(binary.BigEndian.Uint32(b[n:]))
		sum := binary.BigEndian.Uint32(b[n+4:])
		if l > maxRecord || len(b)-n-recordHeader < l {
			return bodies, n, errTornRecord
		}
		body := b[n+recordHeader : n+recordHeader+l]
		if crc32.Checksum(body, castagnoli) != sum {
			return bodies, n, errCorruptRecord
		}
		bodies = append(bodies, body)
		n += recordHeader + l
	}
	return bodies, n, nil
}
