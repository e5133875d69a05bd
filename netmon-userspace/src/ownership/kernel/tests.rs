//! The resolver end to end on synthetic readings built from the test's own
//! sockets and processes: no eBPF, no root needed.

use std::io::BufRead;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};

use netmon_common::exec::{EXE_F_RESOLVED, EXE_PATH_END, ExecIdentity, ExecKey};
use netmon_common::{FlowKey, FlowValue};

use super::*;
use crate::ownership::pidfd::PidFd;
use crate::ownership::sock_diag::tests::socket_cookie;
use crate::testing::{is_root, require};

/// Serializes the tests of this module: while one test spawns a child, the
/// child holds a copy of every fd of the test process until it execs, and
/// another test resolving a socket at that moment would see it as a holder.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Kills and reaps a child process on drop, even when the test fails.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn me() -> u32 {
    std::process::id()
}

fn my_start_ticks() -> u64 {
    ProcFs::new().start_ticks(me()).unwrap()
}

fn tick_ns() -> u64 {
    1_000_000_000 / clock_ticks_per_second()
}

/// A flow of a connected TCP socket, as the eBPF programs would record it.
fn tcp_flow(s: &TcpStream, owner: Option<SockOwner>) -> FlowReading {
    tcp_flow_of(
        socket_cookie(s),
        s.local_addr().unwrap(),
        s.peer_addr().unwrap(),
        owner,
    )
}

/// A flow of the TCP socket with `cookie` from `local` to `peer` (a socket
/// of another process, seen from its end).
fn tcp_flow_of(
    cookie: u64,
    local: SocketAddr,
    peer: SocketAddr,
    owner: Option<SockOwner>,
) -> FlowReading {
    let std::net::IpAddr::V4(l) = local.ip() else {
        panic!("IPv4 expected")
    };
    let std::net::IpAddr::V4(r) = peer.ip() else {
        panic!("IPv4 expected")
    };
    let mut key = FlowKey {
        cookie,
        remote_port: peer.port(),
        ip_version: 4,
        protocol: 6,
        ..FlowKey::default()
    };
    key.remote_addr[..4].copy_from_slice(&r.octets());
    let mut value = FlowValue {
        local_port: local.port(),
        ifindex: 1,
        ..FlowValue::default()
    };
    value.local_addr[..4].copy_from_slice(&l.octets());
    if let Some(o) = owner {
        value.owner = o;
        value.flags = FLOW_F_OWNED;
    }
    FlowReading {
        key,
        value,
        closed: false,
    }
}

fn comm(s: &str) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[..s.len()].copy_from_slice(s.as_bytes());
    c
}

/// The owner record the kernel would write for a socket this process made.
fn my_owner(sock_cookie: u64) -> SockOwner {
    SockOwner {
        tgid: me(),
        tid: me(),
        uid: nix::unistd::getuid().as_raw(),
        gid: nix::unistd::getgid().as_raw(),
        // start_boottime is exact ns; /proc shows it truncated to ticks.
        start_boottime_ns: my_start_ticks() * tick_ns() + tick_ns() / 2,
        created_boottime_ns: u64::MAX / 2,
        sock_cookie,
        comm: comm("thread-name"),
        ..SockOwner::default()
    }
}

fn reading(flows: Vec<FlowReading>) -> Reading {
    Reading {
        flows,
        ..Reading::default()
    }
}

fn tcp_pair() -> (TcpListener, TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    (listener, client, server)
}

fn resolve_one(r: &mut KernelResolver, flow: FlowReading) -> ProcessInfo {
    let out = r.resolve(&reading(vec![flow]));
    assert_eq!(out.len(), 1);
    out[&flow.key.cookie].clone()
}

#[test]
fn creator_identity_matches_proc_stat() {
    let _serial = serial();
    let (_l, client, _s) = tcp_pair();
    let flow = tcp_flow(&client, Some(my_owner(socket_cookie(&client))));
    let info = resolve_one(&mut KernelResolver::new(), flow);
    let facts = ProcFs::new().facts(me()).unwrap();
    assert_eq!(
        info.id,
        ProcessId {
            pid: me(),
            start_ticks: facts.start_ticks
        }
    );
    // Filled from /proc: the process's comm, not the creating thread's.
    assert_eq!(info.comm, facts.comm);
    assert_eq!(info.exe, facts.exe);
    assert!(info.exe.is_some());
    assert_eq!(info.cmdline, facts.cmdline);
    assert_eq!(info.cgroup, facts.cgroup);
    assert_eq!(info.ppid, Some(facts.ppid));
    assert_eq!(info.uid, facts.uid);
    assert_eq!(info.user, UserNames::default().name(facts.uid));
}

#[test]
fn reused_pid_gets_only_kernel_facts() {
    let _serial = serial();
    let (_l, client, _s) = tcp_pair();
    let mut owner = my_owner(socket_cookie(&client));
    // The creator started a tick after this process: same pid, another
    // process.
    owner.start_boottime_ns += tick_ns();
    owner.uid = 4_000_000_123;
    let info = resolve_one(&mut KernelResolver::new(), tcp_flow(&client, Some(owner)));
    assert_eq!(
        info.id,
        ProcessId {
            pid: me(),
            start_ticks: my_start_ticks() + 1
        }
    );
    assert_eq!(info.comm, "thread-name");
    assert_eq!(
        (info.exe, info.cmdline, info.ppid, info.cgroup),
        (None, None, None, None)
    );
    assert_eq!((info.uid, info.user), (4_000_000_123, None));
}

/// An exec record as the kernel writes it: the path at the end of the
/// first half of the buffer, the arguments NUL separated.
fn exec_record(exe: &str, args: &[&str], exec_boottime_ns: u64) -> ExecIdentity {
    let mut r = ExecIdentity::ZERO;
    let off = EXE_PATH_END - exe.len();
    r.exe[off..EXE_PATH_END].copy_from_slice(exe.as_bytes());
    r.exe_off = u16::try_from(off).unwrap();
    r.exe_len = u16::try_from(exe.len()).unwrap();
    r.exe_flags = EXE_F_RESOLVED;
    let joined: Vec<u8> = args.iter().flat_map(|a| a.bytes().chain([0])).collect();
    r.args[..joined.len()].copy_from_slice(&joined);
    r.args_len = u16::try_from(joined.len()).unwrap();
    r.exec_boottime_ns = exec_boottime_ns;
    r
}

/// The creator is gone from `/proc` (here: same pid, another start time):
/// exe and cmdline come from its exec record, the cgroup from the socket's
/// cgroup id.
#[test]
fn exited_process_named_from_exec_record_and_cgroup_id() {
    let _serial = serial();
    let (_l, client, _s) = tcp_pair();
    let mut owner = my_owner(socket_cookie(&client));
    owner.start_boottime_ns += tick_ns();
    let cgroups = tempfile::tempdir().unwrap();
    let cg = cgroups.path().join("netmon-test/child");
    std::fs::create_dir_all(&cg).unwrap();
    owner.cgroup_id = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&cg).unwrap());
    let key = ExecKey {
        tgid: me(),
        _pad: 0,
        start_boottime_ns: owner.start_boottime_ns,
    };
    let records: HashMap<ExecKey, ExecIdentity> = [(
        key,
        exec_record("/usr/bin/python3.11", &["python3", "-c", "pass"], 5),
    )]
    .into();
    let mut r = KernelResolver::new()
        .with_exec_records(Box::new(records))
        .with_cgroup_root(Some(cgroups.path().to_path_buf()));
    let info = resolve_one(&mut r, tcp_flow(&client, Some(owner)));
    assert_eq!(info.id.start_ticks, my_start_ticks() + 1);
    assert_eq!(info.comm, "thread-name");
    assert_eq!(info.exe.as_deref(), Some("/usr/bin/python3.11"));
    assert_eq!(info.cmdline.as_deref(), Some("python3 -c pass"));
    assert_eq!(info.cgroup.as_deref(), Some("/netmon-test/child"));
    // A second socket of the same exited process, first seen later.
    let (_l2, client2, _s2) = tcp_pair();
    let mut owner2 = owner;
    owner2.sock_cookie = socket_cookie(&client2);
    let again = resolve_one(&mut r, tcp_flow(&client2, Some(owner2)));
    assert_eq!(again, info);
}

/// Without a start time the record is matched by pid only, so a record of
/// an exec after the socket was created (a later process with that pid) is
/// not used.
#[test]
fn exec_record_after_the_socket_is_not_used_without_start_time() {
    let _serial = serial();
    let (_l, client, _s) = tcp_pair();
    let mut owner = my_owner(socket_cookie(&client));
    owner.start_boottime_ns = 0;
    owner.created_boottime_ns = 1; // before this process started: not it
    let key = ExecKey {
        tgid: me(),
        _pad: 0,
        start_boottime_ns: 0,
    };
    let records: HashMap<ExecKey, ExecIdentity> =
        [(key, exec_record("/bin/later", &["later"], 2))].into();
    let mut r = KernelResolver::new().with_exec_records(Box::new(records));
    let info = resolve_one(&mut r, tcp_flow(&client, Some(owner)));
    assert_eq!((info.exe, info.cmdline), (None, None));
}

#[test]
fn unknown_start_time_falls_back_to_proc() {
    let _serial = serial();
    let (_l, client, _s) = tcp_pair();
    let mut owner = my_owner(socket_cookie(&client));
    owner.start_boottime_ns = 0;
    let info = resolve_one(&mut KernelResolver::new(), tcp_flow(&client, Some(owner)));
    assert_eq!(
        info.id,
        ProcessId {
            pid: me(),
            start_ticks: my_start_ticks()
        }
    );
    assert!(info.exe.is_some());

    // A socket created before this process started cannot be its: the pid
    // was reused, and /proc's start time must not be taken.
    owner.created_boottime_ns = 1;
    let info = resolve_one(&mut KernelResolver::new(), tcp_flow(&client, Some(owner)));
    assert_eq!(
        info.id,
        ProcessId {
            pid: me(),
            start_ticks: 0
        }
    );
    assert_eq!(info.comm, "thread-name");
    assert_eq!(info.exe, None);
}

#[test]
fn unowned_socket_found_through_sock_diag_and_proc() {
    let _serial = serial();
    let (_l, client, server) = tcp_pair();
    let mut r = KernelResolver::new();
    let flows = vec![tcp_flow(&client, None), tcp_flow(&server, None)];
    let out = r.resolve(&reading(flows.clone()));
    for f in &flows {
        let info = &out[&f.key.cookie];
        assert_eq!(
            info.id,
            ProcessId {
                pid: me(),
                start_ticks: my_start_ticks()
            }
        );
        assert!(info.exe.is_some());
    }
}

#[test]
fn unfindable_sockets_are_unattributed() {
    let _serial = serial();
    let (_l, client, _s) = tcp_pair();
    let mut flow = tcp_flow(&client, None);
    // No socket has this cookie: the lookup finds the client and the kernel
    // rejects it for the wrong cookie; the dump has no such cookie either.
    flow.key.cookie = socket_cookie(&client) ^ (1 << 62);
    let mut icmp = flow;
    icmp.key.cookie += 1;
    icmp.key.protocol = 1;
    let mut r = KernelResolver::new();
    let out = r.resolve(&reading(vec![flow, icmp]));
    for f in [flow, icmp] {
        let info = &out[&f.key.cookie];
        assert_eq!(
            info.id,
            ProcessId {
                pid: 0,
                start_ticks: 0
            }
        );
        assert_eq!(info.comm, UNATTRIBUTED_COMM);
        assert_eq!(info.exe, None);
    }
}

/// Spawns `sleep` holding `fd` as its stdin.
fn child_holding(fd: OwnedFd) -> ChildGuard {
    ChildGuard(
        Command::new("sleep")
            .arg("60")
            .stdin(Stdio::from(fd))
            .spawn()
            .unwrap(),
    )
}

/// An accepted socket's flow: the owner record was cloned from the listener
/// (this process), so its `sock_cookie` is the listener's.
fn accepted_flow(listener: &TcpListener, server: &TcpStream) -> FlowReading {
    tcp_flow(server, Some(my_owner(socket_cookie(listener))))
}

#[test]
fn accepted_socket_held_by_a_child_belongs_to_the_child() {
    let _serial = serial();
    let (listener, _client, server) = tcp_pair();
    let flow = accepted_flow(&listener, &server);
    // The child is the only holder: the parent's copy is closed by spawn.
    let child = child_holding(OwnedFd::from(server));
    let pid = child.0.id();
    let info = resolve_one(&mut KernelResolver::new(), flow);
    let facts = ProcFs::new().facts(pid).unwrap();
    assert_eq!(
        info.id,
        ProcessId {
            pid,
            start_ticks: facts.start_ticks
        }
    );
    assert_eq!(info.comm, "sleep");
    assert_eq!(info.ppid, Some(me()));
}

#[test]
fn accepted_socket_held_by_parent_and_child_prefers_the_child() {
    let _serial = serial();
    let (listener, _client, server) = tcp_pair();
    let flow = accepted_flow(&listener, &server);
    let child = child_holding(OwnedFd::from(server.try_clone().unwrap()));
    let info = resolve_one(&mut KernelResolver::new(), flow);
    assert_eq!(info.id.pid, child.0.id());
    drop(server);
}

#[test]
fn accepted_socket_held_by_the_listener_owner_stays_with_it() {
    let _serial = serial();
    let (listener, _client, server) = tcp_pair();
    let info = resolve_one(
        &mut KernelResolver::new(),
        accepted_flow(&listener, &server),
    );
    assert_eq!(
        info.id,
        ProcessId {
            pid: me(),
            start_ticks: my_start_ticks()
        }
    );
}

#[test]
fn results_are_cached_until_forgotten() {
    let _serial = serial();
    let (listener, _client, server) = tcp_pair();
    let flow = accepted_flow(&listener, &server);
    let child = child_holding(OwnedFd::from(server));
    let child_pid = child.0.id();
    let mut r = KernelResolver::new();
    assert_eq!(resolve_one(&mut r, flow).id.pid, child_pid);
    assert_eq!(r.cached(), 1);
    // The holder exits; the cached answer stands (socket already resolved).
    drop(child);
    assert_eq!(resolve_one(&mut r, flow).id.pid, child_pid);
    // Forgotten: resolved again, now nobody holds the fd (the socket is
    // closed), so the listener owner recorded by the kernel keeps it.
    r.forget(&[flow.key.cookie]);
    assert_eq!(r.cached(), 0);
    assert_eq!(resolve_one(&mut r, flow).id.pid, me());
}

#[test]
fn one_answer_per_cookie_for_many_flows() {
    let _serial = serial();
    let (_l, client, _s) = tcp_pair();
    let owned = tcp_flow(&client, Some(my_owner(socket_cookie(&client))));
    let mut second = owned;
    second.key.remote_port ^= 1;
    let out = KernelResolver::new().resolve(&reading(vec![owned, second]));
    assert_eq!(out.len(), 1);
    assert_eq!(out[&owned.key.cookie].id.pid, me());
}

#[test]
fn comm_bytes() {
    assert_eq!(comm_string(&comm("nginx")), "nginx");
    assert_eq!(comm_string(&[b'a'; 16]), "a".repeat(16));
}

/// A UDP socket held by a process in a network namespace of its own: the
/// resolver must find it through that namespace's sock_diag. Needs root
/// (`unshare -n`) and python3 (to create the socket and print its cookie).
#[test]
fn unowned_socket_in_another_netns_is_found() {
    let _serial = serial();
    let test = "unowned_socket_in_another_netns_is_found";
    if !require(is_root(), test, "root (to create a network namespace)") {
        return;
    }
    let script = "import socket,struct,sys,time\n\
        s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
        s.bind(('0.0.0.0',0))\n\
        c=struct.unpack('=Q',s.getsockopt(socket.SOL_SOCKET,57,8))[0]\n\
        print(c,s.getsockname()[1],flush=True)\n\
        time.sleep(60)\n";
    let spawned = Command::new("unshare")
        .args(["-n", "python3", "-c", script])
        .stdout(Stdio::piped())
        .spawn();
    if !require(spawned.is_ok(), test, "`unshare` and `python3` on the PATH") {
        return;
    }
    let mut child = spawned.unwrap();
    let stdout = child.stdout.take().unwrap();
    let child = ChildGuard(child);
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
    let mut words = line.split_whitespace();
    let (Some(cookie), Some(port)) = (words.next(), words.next()) else {
        panic!("python3 in its own network namespace printed no socket: {line:?}");
    };
    let mut key = FlowKey {
        cookie: cookie.parse().unwrap(),
        remote_port: 9,
        ip_version: 4,
        protocol: 17,
        ..FlowKey::default()
    };
    key.remote_addr[..4].copy_from_slice(&[10, 9, 9, 9]);
    let value = FlowValue {
        local_port: port.parse().unwrap(),
        ..FlowValue::default()
    };
    let flow = FlowReading {
        key,
        value,
        closed: false,
    };
    let info = resolve_one(&mut KernelResolver::new(), flow);
    assert_eq!(info.id.pid, child.0.id(), "{info:?}");
    assert!(ProcFs::new().netns_inode(child.0.id()) != ProcFs::new().netns_inode(me()));
}

/// Runs `python3 -c script args` with `stdin` as its standard input and its
/// standard output piped.
fn python(script: &str, args: &[&str], stdin: OwnedFd) -> ChildGuard {
    ChildGuard(
        Command::new("python3")
            .arg("-c")
            .arg(script)
            .args(args)
            .stdin(Stdio::from(stdin))
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 is needed by this test"),
    )
}

/// The first line the child prints.
fn first_line(child: &mut ChildGuard) -> String {
    let stdout = child.0.stdout.as_mut().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .unwrap();
    assert!(!line.is_empty(), "the child printed nothing");
    line
}

/// Receives one fd over the Unix socket on its stdin, says how many it got,
/// and keeps it open.
const RECEIVER: &str = "import socket,time\n\
    u=socket.socket(fileno=0)\n\
    m,fds,f,a=socket.recv_fds(u,16,1)\n\
    print(len(fds),flush=True)\n\
    time.sleep(60)\n";

/// A Unix stream socket pair, close-on-exec (children get one end as their
/// stdin only).
fn unix_pair() -> (OwnedFd, OwnedFd) {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
    socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .unwrap()
}

/// Regression: a socket created by one process whose fd was passed
/// (`SCM_RIGHTS`) to another, the creator's copy closed, was attributed to
/// the creator because the kernel records only the creator.
#[test]
fn created_socket_passed_over_a_unix_socket_belongs_to_the_holder() {
    let _serial = serial();
    let (_l, client, _server) = tcp_pair();
    let flow = tcp_flow(&client, Some(my_owner(socket_cookie(&client))));
    let (mine, theirs) = unix_pair();
    let mut receiver = python(RECEIVER, &[], theirs);

    // While the creator holds it, the creator owns it (even if another
    // process holds it too).
    let fd = [client.as_raw_fd()];
    let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&fd)];
    let iov = [std::io::IoSlice::new(b"x")];
    nix::sys::socket::sendmsg::<()>(
        mine.as_raw_fd(),
        &iov,
        &cmsg,
        nix::sys::socket::MsgFlags::empty(),
        None,
    )
    .unwrap();
    assert_eq!(first_line(&mut receiver).trim(), "1");
    assert_eq!(resolve_one(&mut KernelResolver::new(), flow).id.pid, me());

    // The creator closes its copy: the receiver is the only holder.
    drop(client);
    let pid = receiver.0.id();
    let info = resolve_one(&mut KernelResolver::new(), flow);
    let facts = ProcFs::new().facts(pid).unwrap();
    assert_eq!(
        info.id,
        ProcessId {
            pid,
            start_ticks: facts.start_ticks
        }
    );
    assert_eq!(info.ppid, Some(me()));
    assert_eq!(info.cmdline, facts.cmdline);
}

/// Connects to the port in argv[1], prints the socket's cookie and local
/// port, sends it over the Unix socket on stdin when argv[2] is "pass", and
/// exits (closing its own copy).
const CREATOR: &str = "import socket,struct,sys\n\
    u=socket.socket(fileno=0)\n\
    t=socket.create_connection(('127.0.0.1',int(sys.argv[1])))\n\
    t.sendall(b'hello')\n\
    c=struct.unpack('=Q',t.getsockopt(socket.SOL_SOCKET,57,8))[0]\n\
    if sys.argv[2]=='pass': socket.send_fds(u,[b'x'],[t.fileno()])\n\
    print(c,flush=True)\n";

/// Runs [`CREATOR`] against `listener` and waits for it to exit. Returns
/// its pid, the flow of its socket as the kernel records it (the owner's
/// start time and comm are made up: the process is gone) and the accepted
/// end, which the caller keeps open.
fn run_creator(
    listener: &TcpListener,
    mode: &str,
    stdin: OwnedFd,
) -> (u32, FlowReading, TcpStream) {
    let port = listener.local_addr().unwrap().port().to_string();
    let mut creator = python(CREATOR, &[&port, mode], stdin);
    let (server, _) = listener.accept().unwrap();
    let cookie: u64 = first_line(&mut creator).trim().parse().unwrap();
    let pid = creator.0.id();
    assert!(creator.0.wait().unwrap().success());
    let owner = SockOwner {
        tgid: pid,
        tid: pid,
        uid: nix::unistd::getuid().as_raw(),
        start_boottime_ns: 777 * tick_ns(),
        created_boottime_ns: 778 * tick_ns(),
        sock_cookie: cookie,
        comm: comm("creator"),
        ..SockOwner::default()
    };
    let flow = tcp_flow_of(
        cookie,
        server.peer_addr().unwrap(),
        server.local_addr().unwrap(),
        Some(owner),
    );
    (pid, flow, server)
}

/// The kernel's record of a creator that has exited: identity and comm from
/// the record (see [`run_creator`]), nothing from `/proc`.
fn assert_gone_creator(info: &ProcessInfo, pid: u32) {
    assert_eq!(
        info.id,
        ProcessId {
            pid,
            start_ticks: 777
        },
        "{info:?}"
    );
    assert_eq!(info.comm, "creator");
    assert_eq!(info.exe, None);
}

#[test]
fn socket_passed_by_a_creator_that_exited_belongs_to_the_holder() {
    let _serial = serial();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let (creator_end, receiver_end) = unix_pair();
    let mut receiver = python(RECEIVER, &[], receiver_end);
    let (creator_pid, flow, _server) = run_creator(&listener, "pass", creator_end);
    assert_eq!(first_line(&mut receiver).trim(), "1");
    let info = resolve_one(&mut KernelResolver::new(), flow);
    assert_eq!(info.id.pid, receiver.0.id(), "creator was {creator_pid}");
    assert_eq!(
        info.id.start_ticks,
        ProcFs::new().start_ticks(receiver.0.id()).unwrap()
    );
}

/// A process that connected, sent and exited before the drain keeps its
/// socket's bytes, whether the socket is marked closed yet or not, and
/// whether sock_diag can see it or not (ICMP).
#[test]
fn short_lived_creator_keeps_its_socket() {
    let _serial = serial();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let (creator_end, _other_end) = unix_pair();
    let (pid, flow, _server) = run_creator(&listener, "keep", creator_end);
    let mut closed = flow;
    closed.closed = true;
    let mut icmp = flow;
    icmp.key.protocol = 1;
    for f in [flow, closed, icmp] {
        assert_gone_creator(&resolve_one(&mut KernelResolver::new(), f), pid);
    }
}

/// Finishes the connection (both FINs exchanged, both ends still open):
/// `first` shuts down first (its end becomes a `TIME_WAIT` twin, inode 0, in
/// sock_diag), then `second` (its end leaves the socket tables). Waits until
/// sock_diag no longer gives either an inode.
fn finish(first: &TcpStream, second: &TcpStream, flows: &[FlowReading]) {
    use std::io::Read;
    let mut buf = [0u8; 16];
    first.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!((&mut &*second).read(&mut buf).unwrap(), 0);
    second.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!((&mut &*first).read(&mut buf).unwrap(), 0);
    let mut lookup = SockLookup::new(ProcFs::new());
    for _ in 0..200 {
        let visible = flows.iter().any(|f| {
            let found = lookup.find(std::slice::from_ref(f), None);
            lookup.end_pass();
            found.is_some_and(|s| s.inode != 0)
        });
        if !visible {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    panic!("the finished connection is still in sock_diag with an inode");
}

/// Regression: a socket opened before netmon loaded whose connection
/// finished while its fd stays open is gone from sock_diag, and was
/// `[unattributed]`; the fd probe finds its holder.
#[test]
fn finished_unowned_sockets_belong_to_their_holder() {
    let _serial = serial();
    let (_l, client, server) = tcp_pair();
    let flows = vec![tcp_flow(&client, None), tcp_flow(&server, None)];
    finish(&server, &client, &flows);
    let mut r = KernelResolver::new();
    let out = r.resolve(&reading(flows.clone()));
    for f in &flows {
        let info = &out[&f.key.cookie];
        assert_eq!(
            info.id,
            ProcessId {
                pid: me(),
                start_ticks: my_start_ticks()
            },
            "{info:?}"
        );
    }
}

/// Regression: an accepted socket held only by a child, its connection
/// finished, stayed with the listener's owner (the parent).
#[test]
fn finished_accepted_socket_held_by_a_child_belongs_to_the_child() {
    let _serial = serial();
    let (listener, client, server) = tcp_pair();
    let flow = accepted_flow(&listener, &server);
    finish(&client, &server, &[flow]);
    let child = child_holding(OwnedFd::from(server));
    // Probe first: the fd probe needs ptrace access to the child (root, or
    // what yama's ptrace_scope allows), which this test cannot grant.
    let access = PidFd::open(child.0.id()).and_then(|p| p.get_fd(0)).is_ok();
    let test = "finished_accepted_socket_held_by_a_child_belongs_to_the_child";
    if !require(
        access,
        test,
        "ptrace access to a child (root, or yama ptrace_scope 0)",
    ) {
        return;
    }
    let info = resolve_one(&mut KernelResolver::new(), flow);
    assert_eq!(info.id.pid, child.0.id(), "{info:?}");
    assert_eq!(info.comm, "sleep");
}

/// A finished socket whose fd is closed is released: nobody is probed, and
/// the kernel's record stands.
#[test]
fn released_finished_socket_keeps_the_listener_owner() {
    let _serial = serial();
    let (listener, client, server) = tcp_pair();
    let mut flow = accepted_flow(&listener, &server);
    finish(&client, &server, &[flow]);
    drop(server);
    flow.closed = true;
    assert_eq!(resolve_one(&mut KernelResolver::new(), flow).id.pid, me());
}

/// The owner record `sock_release` writes for a socket `pid` (a child,
/// not this process) released.
fn released_by(pid: u32, sock_cookie: u64) -> SockOwner {
    let start = ProcFs::new().start_ticks(pid).unwrap();
    SockOwner {
        tgid: pid,
        tid: pid,
        start_boottime_ns: start * tick_ns() + tick_ns() / 2,
        sock_cookie,
        comm: comm("sleep"),
        ..SockOwner::default()
    }
}

/// Issue 8 §1: a pool worker accepted, served and closed a connection
/// before the drain; no fd is left to find. The releasing process (the
/// worker) owns it, not the listener's owner.
#[test]
fn closed_accepted_socket_belongs_to_the_process_that_released_it() {
    let _serial = serial();
    let (listener, _client, server) = tcp_pair();
    let mut flow = accepted_flow(&listener, &server);
    flow.closed = true;
    let worker = child_holding(OwnedFd::from(server.try_clone().unwrap()));
    let pid = worker.0.id();
    let mut r = reading(vec![flow]);
    r.released_by
        .insert(flow.key.cookie, released_by(pid, flow.key.cookie));
    let info = KernelResolver::new().resolve(&r)[&flow.key.cookie].clone();
    assert_eq!(info.id.pid, pid, "{info:?}");
    assert_eq!(info.comm, "sleep");
    // Unowned (older than the programs) and closed: the releaser too.
    let mut unowned = tcp_flow(&server, None);
    unowned.closed = true;
    let mut r = reading(vec![unowned]);
    r.released_by
        .insert(unowned.key.cookie, released_by(pid, unowned.key.cookie));
    let info = KernelResolver::new().resolve(&r)[&unowned.key.cookie].clone();
    assert_eq!(info.id.pid, pid, "{info:?}");
}

/// A socket its owner released (`FLOW_F_OWNER_RELEASED`, no closed mark)
/// belongs to that owner at once: no sock_diag lookup, which would find
/// the socket still open here and credit the child holding it.
#[test]
fn a_socket_released_by_its_owner_needs_no_closed_mark() {
    let _serial = serial();
    let (listener, _client, server) = tcp_pair();
    let owner = child_holding(OwnedFd::from(listener.try_clone().unwrap()));
    let owner_pid = owner.0.id();
    let holder = child_holding(OwnedFd::from(server.try_clone().unwrap()));
    let mut flow = tcp_flow(
        &server,
        Some(released_by(owner_pid, socket_cookie(&listener))),
    );
    drop(server);
    // Without the flag the lookup finds the holder: the test's premise.
    let info = KernelResolver::new().resolve(&reading(vec![flow]))[&flow.key.cookie].clone();
    assert_eq!(info.id.pid, holder.0.id(), "{info:?}");
    flow.value.flags |= netmon_common::FLOW_F_CLOSED | netmon_common::FLOW_F_OWNER_RELEASED;
    flow.closed = true;
    let info = KernelResolver::new().resolve(&reading(vec![flow]))[&flow.key.cookie].clone();
    assert_eq!(info.id.pid, owner_pid, "{info:?}");
}

/// The daemon's own fd sweep can drop a socket's last reference (the
/// process closed its fd while the sweep held a copy): a release by this
/// process is not an owner; the listener's owner (a child here) keeps the
/// accepted socket.
#[test]
fn a_release_by_netmon_itself_is_not_an_owner() {
    let _serial = serial();
    let (listener, client, server) = tcp_pair();
    let owner = child_holding(OwnedFd::from(listener.try_clone().unwrap()));
    let owner_pid = owner.0.id();
    let mut flow = tcp_flow(
        &server,
        Some(released_by(owner_pid, socket_cookie(&listener))),
    );
    finish(&client, &server, &[flow]);
    drop(server);
    flow.closed = true;
    let mut r = reading(vec![flow]);
    r.released_by
        .insert(flow.key.cookie, my_owner(flow.key.cookie));
    let info = KernelResolver::new().resolve(&r)[&flow.key.cookie].clone();
    assert_eq!(info.id.pid, owner_pid, "{info:?}");
}

/// A socket the kernel saw created keeps its creator, whoever closed it.
#[test]
fn closed_created_socket_keeps_its_creator() {
    let _serial = serial();
    let (_l, client, _s) = tcp_pair();
    let mut flow = tcp_flow(&client, Some(my_owner(socket_cookie(&client))));
    flow.closed = true;
    let other = child_holding(OwnedFd::from(client.try_clone().unwrap()));
    let mut r = reading(vec![flow]);
    r.released_by
        .insert(flow.key.cookie, released_by(other.0.id(), flow.key.cookie));
    let info = KernelResolver::new().resolve(&r)[&flow.key.cookie].clone();
    assert_eq!(info.id.pid, me());
}
