package storage

// The named heads a node's store keeps (Store.SetHead, Store.Head).
const (
	// HeadSwarm is the swarm manifest's CID: the swarm this store holds.
	HeadSwarm = "swarm"
	// HeadLedger is the latest sealed round record's CID.
	HeadLedger = "ledger"
)
