package storage

import "github.com/ipfs/boxo/bitswap"

// bitswapOptions tune boxo's bitswap for what swarmtrain moves: checkpoints
// of 1 MiB blocks between a few peers on fast links, besides small records.
// boxo's defaults (bitswap/internal/defaults) are sized for Kubo nodes
// serving many peers small blocks over the internet. Bitswap stays the
// exchange for IPFS clients and the fallback of storage/transfer, so its
// speed still matters; benchmarks/transfer measures both sets side by side.
var bitswapOptions = []bitswap.Option{
	// Default 1 MiB: the server's engine hands a peer at most this many
	// bytes of blocks before waiting for them to be sent, which with 1 MiB
	// checkpoint blocks is one block in flight per peer, and the link idles
	// for every round trip between the engine, the message queue and the
	// stream. 16 MiB keeps a window of 16 blocks queued, enough to cover a
	// LAN's bandwidth-delay product, and bounds what one peer can make the
	// server hold at 16 MiB.
	bitswap.MaxOutstandingBytesPerPeer(16 << 20),
	// Default 16 KiB: a message is closed once it holds this many bytes of
	// blocks, so with 256 KiB to 1 MiB blocks every block goes in its own
	// message with its own framing and send. 1 MiB packs small blocks
	// (records, payloads, DAG nodes) together, and stays far under
	// libp2p's 4 MiB bitswap message limit.
	bitswap.WithTargetMessageSize(1 << 20),
}
