package verify

import (
	"encoding/binary"
	"hash/crc32"

	"github.com/swarmtrain/swarmtrain/gradient"
)

// fixCRC recomputes a wire message's payload checksum after a test edited it.
func fixCRC(b []byte) []byte {
	binary.LittleEndian.PutUint32(b[16:], crc32.Checksum(b[gradient.HeaderSize:], crc32.MakeTable(crc32.Castagnoli)))
	return b
}
