package storage

import (
	"bytes"
	"context"
	"fmt"
	"io"

	"github.com/ipfs/go-cid"
	ipldformat "github.com/ipfs/go-ipld-format"
	_ "github.com/ipld/go-codec-dagpb"              // registers dag-pb: UnixFS files are dag-pb nodes
	_ "github.com/ipld/go-ipld-prime/codec/dagcbor" // registers dag-cbor: records
	_ "github.com/ipld/go-ipld-prime/codec/raw"     // registers raw: file leaves and payloads
	"github.com/ipld/go-ipld-prime/datamodel"
	"github.com/ipld/go-ipld-prime/linking"
	cidlink "github.com/ipld/go-ipld-prime/linking/cid"
	"github.com/ipld/go-ipld-prime/multicodec"
	"github.com/ipld/go-ipld-prime/node/basicnode"
	"github.com/ipld/go-ipld-prime/traversal"
)

// LinkSystem is a go-ipld-prime link system reading the store's blocks
// (hash-checked, like every read) with the dag-cbor, dag-pb and raw codecs:
// what lets any IPLD tool — traversal.Focus on "body/prev/body/model", a
// selector walk — follow the links in our records and files.
func (s *Store) LinkSystem() linking.LinkSystem {
	ls := cidlink.DefaultLinkSystem()
	ls.StorageReadOpener = func(lc linking.LinkContext, l datamodel.Link) (io.Reader, error) {
		cl, ok := l.(cidlink.Link)
		if !ok {
			return nil, fmt.Errorf("storage: link %s is not a CID", l)
		}
		b, err := s.bs.Get(lc.Ctx, cl.Cid)
		if err != nil {
			return nil, err
		}
		return bytes.NewReader(b.RawData()), nil
	}
	ls.TrustedStorage = false // the blockstore re-hashes anyway; the link system checks again
	return ls
}

// Refs is what a recursive walk from a root found.
type Refs struct {
	// Blocks are the root and every block reachable from it through links,
	// each once, in breadth-first order: what `ipfs pin add --recursive
	// <root>` pins and `ipfs refs -r --unique <root>` lists (the latter
	// without the root).
	Blocks []cid.Cid
	// Missing are linked blocks this store does not hold: a pin of the
	// root would wait for someone to serve them. In a ledger these are
	// payloads a peer announced and withheld (verdict "unavailable") or
	// inline payloads that did not hash to the CID their author signed.
	Missing []cid.Cid
}

// Refs walks every link from root through the store, offline. dag-cbor
// (records) and dag-pb (UnixFS nodes) blocks are decoded and their links
// followed; raw blocks (file chunks, payloads) have none and are only
// checked for presence, not read. Blocks of other codecs are listed but not
// decoded. Blocks come from peers, so decoding one may fail: that is an
// error naming it, never a panic.
func (s *Store) Refs(ctx context.Context, root cid.Cid) (Refs, error) {
	var out Refs
	seen := map[cid.Cid]bool{root: true}
	queue := []cid.Cid{root}
	for len(queue) > 0 {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		c := queue[0]
		queue = queue[1:]
		if c.Prefix().Codec != cid.DagCBOR && c.Prefix().Codec != cid.DagProtobuf {
			ok, err := s.bs.Has(ctx, c)
			if err != nil {
				return out, fmt.Errorf("storage: block %s: %w", c, err)
			}
			if ok {
				out.Blocks = append(out.Blocks, c)
			} else {
				out.Missing = append(out.Missing, c)
			}
			continue
		}
		b, err := s.bs.Get(ctx, c)
		if ipldformat.IsNotFound(err) {
			out.Missing = append(out.Missing, c)
			continue
		}
		if err != nil {
			return out, err
		}
		out.Blocks = append(out.Blocks, c)
		links, err := blockLinks(c, b.RawData())
		if err != nil {
			return out, err
		}
		for _, l := range links {
			if !seen[l] {
				seen[l] = true
				queue = append(queue, l)
			}
		}
	}
	return out, nil
}

// blockLinks decodes a dag-cbor or dag-pb block with its registered codec
// and returns the CIDs it links to, in the order the codec presents them.
func blockLinks(c cid.Cid, raw []byte) (links []cid.Cid, err error) {
	defer func() {
		if r := recover(); r != nil {
			links, err = nil, fmt.Errorf("storage: block %s: malformed: %v", c, r)
		}
	}()
	decode, err := multicodec.LookupDecoder(c.Prefix().Codec)
	if err != nil {
		return nil, fmt.Errorf("storage: block %s: %w", c, err)
	}
	nb := basicnode.Prototype.Any.NewBuilder()
	if err := decode(nb, bytes.NewReader(raw)); err != nil {
		return nil, fmt.Errorf("storage: block %s: %w", c, err)
	}
	ls, err := traversal.SelectLinks(nb.Build())
	if err != nil {
		return nil, fmt.Errorf("storage: block %s: %w", c, err)
	}
	for _, l := range ls {
		cl, ok := l.(cidlink.Link)
		if !ok {
			return nil, fmt.Errorf("storage: block %s links %s, not a CID", c, l)
		}
		links = append(links, cl.Cid)
	}
	return links, nil
}
