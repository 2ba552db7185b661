//go:build linux

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/swarmtrain/swarmtrain/internal/testdata"
	"github.com/swarmtrain/swarmtrain/node"
)

// natNet is the test's own small internet, in network namespaces it
// creates and removes:
//
//	home1 (10.1.0.2) ── nat1 (10.1.0.1 | 11.0.1.2) ──┐
//	                                                  pub (11.0.1.1, 11.0.2.1): the coordinator, and the
//	home2 (10.2.0.2) ── nat2 (10.2.0.1 | 11.0.2.2) ──┘   backbone that forwards between the two NATs
//
// nat1 and nat2 are home routers: MASQUERADE on their WAN side and a
// stateful filter that lets in only replies to what went out (what a home
// router does; a packet from a peer the home never sent to is dropped).
// The "public" side uses 11.0.x.x because libp2p hole punches only from
// addresses it counts as public, and every reserved range (TEST-NETs,
// 100.64/10, ...) counts as private; the namespaces have no link to the
// host, so no packet ever leaves them.
type natNet struct {
	prefix string
}

// ns is the full name of one of the test's namespaces.
func (n *natNet) ns(name string) string { return n.prefix + name }

func sh(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// newNATNet builds the namespaces, or skips the test where they cannot be
// created (not root, no ip, no namespace support). Every namespace it
// made is removed when the test ends, however it ends.
func newNATNet(t *testing.T) *natNet {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the NAT test needs root to create network namespaces (ip netns); run make test-long as root or in CI")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("the NAT test needs ip (Debian: apt-get install iproute2) to create network namespaces")
	}
	removeStaleNATNets()
	n := &natNet{prefix: fmt.Sprintf("stnat%d-", os.Getpid())}
	if out, err := exec.Command("ip", "netns", "add", n.ns("pub")).CombinedOutput(); err != nil {
		t.Skipf("cannot create a network namespace here (%v: %s): the NAT test needs CAP_SYS_ADMIN", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		for _, name := range []string{"home1", "home2", "nat1", "nat2", "pub"} {
			exec.Command("ip", "netns", "del", n.ns(name)).Run()
		}
	})
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Fatal("the NAT test needs iptables for its NAT routers (Debian: apt-get install iptables; .ci/run installs it)")
	}
	for _, name := range []string{"home1", "home2", "nat1", "nat2"} {
		sh(t, "ip", "netns", "add", n.ns(name))
	}
	for _, name := range []string{"pub", "home1", "home2", "nat1", "nat2"} {
		sh(t, "ip", "-n", n.ns(name), "link", "set", "lo", "up")
	}
	sh(t, "ip", "netns", "exec", n.ns("pub"), "sysctl", "-qw", "net.ipv4.ip_forward=1")
	for _, i := range []string{"1", "2"} {
		home, nat, pub := n.ns("home"+i), n.ns("nat"+i), n.ns("pub")
		// The home's LAN: home <-> nat.
		sh(t, "ip", "link", "add", "lan", "netns", home, "type", "veth", "peer", "name", "lan", "netns", nat)
		// The NAT's uplink: nat <-> pub.
		sh(t, "ip", "link", "add", "wan", "netns", nat, "type", "veth", "peer", "name", "nat"+i, "netns", pub)
		sh(t, "ip", "-n", home, "addr", "add", "10."+i+".0.2/24", "dev", "lan")
		sh(t, "ip", "-n", nat, "addr", "add", "10."+i+".0.1/24", "dev", "lan")
		sh(t, "ip", "-n", nat, "addr", "add", "11.0."+i+".2/24", "dev", "wan")
		sh(t, "ip", "-n", pub, "addr", "add", "11.0."+i+".1/24", "dev", "nat"+i)
		for _, l := range [][2]string{{home, "lan"}, {nat, "lan"}, {nat, "wan"}, {pub, "nat" + i}} {
			sh(t, "ip", "-n", l[0], "link", "set", l[1], "up")
		}
		sh(t, "ip", "-n", home, "route", "add", "default", "via", "10."+i+".0.1")
		sh(t, "ip", "-n", nat, "route", "add", "default", "via", "11.0."+i+".1")
		sh(t, "ip", "netns", "exec", nat, "sysctl", "-qw", "net.ipv4.ip_forward=1")
		ipt := []string{"ip", "netns", "exec", nat, "iptables"}
		sh(t, append(ipt, "-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE")...)
		sh(t, append(ipt, "-P", "FORWARD", "DROP")...)
		sh(t, append(ipt, "-A", "FORWARD", "-i", "lan", "-o", "wan", "-j", "ACCEPT")...)
		sh(t, append(ipt, "-A", "FORWARD", "-i", "wan", "-o", "lan", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT")...)
		// The router itself answers nothing from outside either: an
		// unsolicited packet is dropped, not refused, as at a home NAT.
		sh(t, append(ipt, "-A", "INPUT", "-i", "wan", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT")...)
		sh(t, append(ipt, "-A", "INPUT", "-i", "wan", "-j", "DROP")...)
	}
	return n
}

// removeStaleNATNets removes the namespaces of an earlier run of this
// test that was killed before its cleanup ran (its process is gone).
func removeStaleNATNets() {
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(line, " ")
		m := regexp.MustCompile(`^stnat(\d+)-`).FindStringSubmatch(name)
		if m == nil {
			continue
		}
		if _, err := os.Stat("/proc/" + m[1]); err == nil {
			continue // a running test's
		}
		exec.Command("ip", "netns", "del", name).Run()
	}
}

// spawnIn starts the binary in namespace ns.
func (n *natNet) spawnIn(t *testing.T, ns, bin, logPath string, args ...string) *proc {
	t.Helper()
	return spawnCmd(t, exec.Command("ip", append([]string{"netns", "exec", n.ns(ns), bin}, args...)...), logPath)
}

// getIn GETs url from inside namespace ns (the coordinator's API listens
// on that namespace's loopback): the connection is dialled on an OS thread
// that has joined ns, and the HTTP client only uses that connection.
func (n *natNet) getIn(ns, url string, v any) error {
	type result struct {
		conn net.Conn
		err  error
	}
	ch := make(chan result, 1)
	host := strings.TrimPrefix(url, "http://")
	host = host[:strings.IndexByte(host, '/')]
	go func() {
		// The thread is never unlocked: it leaves with the goroutine
		// instead of going back to the pool in another namespace.
		runtime.LockOSThread()
		f, err := os.Open("/var/run/netns/" + n.ns(ns))
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{err: err}
			return
		}
		c, err := net.DialTimeout("tcp", host, 5*time.Second)
		ch <- result{c, err}
	}()
	r := <-ch
	if r.err != nil {
		return r.err
	}
	used := false
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(context.Context, string, string) (net.Conn, error) {
			if used {
				return nil, fmt.Errorf("one connection per request")
			}
			used = true
			return r.conn, nil
		},
	}}
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}

// logLines are the stderr log lines (slog text) of a process's log file
// that match re.
func logLines(t *testing.T, path string, re *regexp.Regexp) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if re.MatchString(sc.Text()) {
			out = append(out, sc.Text())
		}
	}
	return out
}

// TestNATSwarm trains a swarm across two home NATs: the coordinator in
// pub serves as relay, one contributor in each home joins with --relay
// use. Each contributor reaches the coordinator directly (outbound through
// its NAT); the two contributors first meet through the coordinator's
// relay, then DCUtR punches a direct path between them. The test asserts
// the accuracy, the hole punch on the contributors' side and the paths in
// the coordinator's /v1/swarm.
func TestNATSwarm(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("the NAT swarm runs in make test-long (separate processes in network namespaces)")
	}
	nn := newNATNet(t)
	mnist := testdata.MNISTDir(t)
	dir := t.TempDir()
	bin := builtBinary(t)
	const rounds = 40
	cfg := writeFile(t, "swarm.yaml", fmt.Sprintf(`name: nat
model: {kind: mlp, hidden: [256, 128]}
data: {dir: %s}
train: {rounds: %d}
round: {deadline: 20s, quorum: 2, min_contributions: 1}
network: {listen: ["/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1"], relay: serve}
api: {listen: "127.0.0.1:0"}
`, mnist, rounds))
	coordLog := filepath.Join(dir, "coordinator.log")
	coord := nn.spawnIn(t, "pub", bin, coordLog, "--log-level", "info", "start", "--config", cfg, "--data-dir", filepath.Join(dir, "coordinator"), "--exit-when-done")
	join := coord.waitLine(t, regexp.MustCompile(`^\s+\S*swarmtrain join (\S+) --bootstrap (\S+)`), 60*time.Second)
	swarmID, boot := join[1], join[2]
	if !strings.HasPrefix(boot, "/ip4/11.0.") {
		t.Fatalf("the coordinator offers %s, want its public 11.0.x.x address", boot)
	}
	api := coord.waitLine(t, regexp.MustCompile(`^api: (http://\S+)/v1/swarm`), 10*time.Second)[1]

	ids := map[string]string{}
	contribs := map[string]*proc{}
	for _, home := range []string{"home1", "home2"} {
		contribs[home] = nn.spawnIn(t, home, bin, filepath.Join(dir, home+".log"), "--log-level", "info",
			"join", swarmID, "--bootstrap", boot, "--relay", "use",
			"--listen", "/ip4/0.0.0.0/tcp/0,/ip4/0.0.0.0/udp/0/quic-v1",
			"--data-dir", filepath.Join(dir, home), "--dataset-dir", mnist)
	}
	for home, p := range contribs {
		ids[home] = p.waitLine(t, regexp.MustCompile(`^joined swarm \S+ \(nat\) as (\S+)`), time.Minute)[1]
	}

	// Mid-run, the coordinator reaches both contributors directly (they
	// dialled out through their NATs).
	coord.waitLine(t, sealedRE(5), 2*time.Minute)
	var sw node.SwarmResponse
	if err := nn.getIn("pub", api+"/v1/swarm", &sw); err != nil {
		t.Fatalf("GET /v1/swarm in pub: %v", err)
	}
	paths := map[string]node.PeerConn{}
	for _, p := range sw.Peers {
		paths[p.Peer] = p
	}
	t.Logf("/v1/swarm peers: %+v", sw.Peers)
	for home, id := range ids {
		if got := paths[id].Path; got != "direct" {
			t.Errorf("coordinator reaches %s (%s) %q, want direct", home, id, got)
		}
	}

	// Between the homes: relayed first, then hole-punched. Either side
	// may be the one that dialled through the relay; both trace the punch.
	// Polled while the swarm trains: the contributors exit with its end.
	counts := func() (relayed, punched int, lines []string) {
		for home := range ids {
			logPath := filepath.Join(dir, home+".log")
			for other, oid := range ids {
				if other == home {
					continue
				}
				r := logLines(t, logPath, regexp.MustCompile(`msg=connected peer=`+oid+` path=relayed`))
				p := logLines(t, logPath, regexp.MustCompile(`msg="hole punched: direct connection" peer=`+oid))
				relayed += len(r)
				punched += len(p)
				lines = append(lines, fmt.Sprintf("%s -> %s: %d relayed connections, %d hole punches", home, other, len(r), len(p)))
			}
		}
		return relayed, punched, lines
	}
	punchDeadline := time.Now().Add(2 * time.Minute)
	for {
		relayed, punched, lines := counts()
		if relayed > 0 && punched > 0 {
			for _, l := range lines {
				t.Log(l)
			}
			break
		}
		if time.Now().After(punchDeadline) || coord.count(sealedRE(rounds-1)) > 0 {
			t.Errorf("the homes were not hole-punched through the relay (%d relayed connections, %d hole punches; logs in %s):\n%s", relayed, punched, dir, strings.Join(lines, "\n"))
			break
		}
		time.Sleep(500 * time.Millisecond)
	}

	last := coord.waitLine(t, sealedRE(rounds-1), 4*time.Minute)
	acc, _ := strconv.ParseFloat(last[2], 64)
	t.Logf("final test accuracy %.2f%% after %d rounds across two NATs", acc, rounds)
	if acc < 95.5 {
		t.Errorf("final test accuracy %.2f%%, want >= 95.5%% (the demo reaches 97.4%% on loopback with 3 contributors; 96.7-97.1 %% seen here)", acc)
	}
	for _, p := range contribs {
		p.wait(t, time.Minute)
	}
	coord.wait(t, time.Minute)
}
