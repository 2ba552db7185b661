package node

import (
	"context"
	"fmt"
	"os"

	"github.com/ipfs/go-cid"

	"github.com/swarmtrain/swarmtrain/storage"
)

// ProbeHead connects to the peer at bootstrap as a throwaway peer (fresh
// key, temporary store) and asks it for its swarm's head. A joiner uses it
// to fail at once, naming the peer and what it serves, instead of waiting
// on a manifest that peer will never send.
func ProbeHead(ctx context.Context, bootstrap string) (Head, error) {
	dir, err := os.MkdirTemp("", "swarmtrain-probe-")
	if err != nil {
		return Head{}, err
	}
	defer os.RemoveAll(dir)
	o, err := newObserver(ctx, bootstrap, dir)
	if err != nil {
		return Head{}, err
	}
	defer o.close()
	return askHead(ctx, o.h, o.peer)
}

// FetchFile fetches the file c (a model checkpoint) over bitswap from the
// peer at bootstrap, as a throwaway peer, and checks that the bytes it got
// hash to c: bitswap checks each block, this checks the whole file.
func FetchFile(ctx context.Context, bootstrap string, c cid.Cid) ([]byte, error) {
	dir, err := os.MkdirTemp("", "swarmtrain-fetch-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	o, err := newObserver(ctx, bootstrap, dir)
	if err != nil {
		return nil, err
	}
	defer o.close()
	b, err := o.ex.File(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("fetching %s from %s: %w", c, bootstrap, err)
	}
	got, err := storage.FileCID(b)
	if err != nil {
		return nil, err
	}
	if !got.Equals(c) {
		return nil, fmt.Errorf("%s sent %d bytes for %s that hash to %s", bootstrap, len(b), c, got)
	}
	return b, nil
}
