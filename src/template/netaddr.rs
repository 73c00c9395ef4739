//! The `ipaddr` filter family (subset): validate and pick apart addresses and networks
//! (`address`, `network`, `prefix`, `netmask`, `broadcast`, `net`, `host`, `size`, nth address),
//! `ipv4`/`ipv6`, and `ipwrap`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use minijinja::value::{Value, ValueKind};
use minijinja::Error;

use super::convert::py_str;
use super::filters::{fail, need};

/// An address with a prefix length (`10.0.0.5/24`; a bare address has the full length).
#[derive(Clone, Copy)]
struct Cidr {
    addr: IpAddr,
    prefix: u32,
    /// Whether the input had an explicit prefix.
    has_prefix: bool,
}

impl Cidr {
    fn parse(s: &str) -> Option<Cidr> {
        let s = s.trim();
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .ok()?;
        let max = bits(&addr);
        let prefix = match p {
            Some(p) => match p.parse::<u32>() {
                Ok(n) if n <= max => n,
                Ok(_) => return None,
                Err(_) => match p.parse::<Ipv4Addr>() {
                    Ok(mask) if addr.is_ipv4() => u32::from(mask).count_ones(),
                    _ => return None,
                },
            },
            None => max,
        };
        Some(Cidr {
            addr,
            prefix,
            has_prefix: p.is_some(),
        })
    }

    fn mask(&self) -> u128 {
        let b = bits(&self.addr);
        if self.prefix == 0 {
            0
        } else {
            (u128::MAX << (128 - self.prefix)) >> (128 - b)
        }
    }

    fn as_int(&self) -> u128 {
        match self.addr {
            IpAddr::V4(a) => u32::from(a) as u128,
            IpAddr::V6(a) => u128::from(a),
        }
    }

    fn addr_of_int(&self, n: u128) -> IpAddr {
        match self.addr {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(n as u32)),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(n)),
        }
    }

    fn network(&self) -> IpAddr {
        self.addr_of_int(self.as_int() & self.mask())
    }

    fn broadcast(&self) -> IpAddr {
        let all = if self.addr.is_ipv4() {
            u32::MAX as u128
        } else {
            u128::MAX
        };
        self.addr_of_int((self.as_int() & self.mask()) | (all & !self.mask()))
    }

    fn size(&self) -> u128 {
        let host_bits = bits(&self.addr) - self.prefix;
        if host_bits >= 128 {
            u128::MAX
        } else {
            1u128 << host_bits
        }
    }
}

fn bits(a: &IpAddr) -> u32 {
    if a.is_ipv4() {
        32
    } else {
        128
    }
}

fn is_private(a: &IpAddr) -> bool {
    match a {
        IpAddr::V4(v) => v.is_private() || v.is_loopback() || v.is_link_local(),
        IpAddr::V6(v) => v.is_loopback() || (v.segments()[0] & 0xfe00) == 0xfc00,
    }
}

/// Applies `query` to one address; `None` means "not an address / filtered out" (Ansible's False).
fn apply(s: &str, query: &Value, version: Option<u32>) -> Result<Option<Value>, Error> {
    let Some(c) = Cidr::parse(s) else {
        return Ok(None);
    };
    if let Some(v) = version {
        if (v == 4) != c.addr.is_ipv4() {
            return Ok(None);
        }
    }
    if query.kind() == ValueKind::Number {
        let n = i64::try_from(query.clone()).map_err(|_| fail("ipaddr: bad index"))?;
        let base = c.as_int() & c.mask();
        let size = c.size();
        let idx = if n >= 0 {
            n as u128
        } else {
            size.wrapping_sub((-n) as u128)
        };
        if idx >= size {
            return Ok(None);
        }
        return Ok(Some(Value::from(format!(
            "{}/{}",
            c.addr_of_int(base + idx),
            c.prefix
        ))));
    }
    let q = if query.is_undefined() || query.is_none() {
        String::new()
    } else {
        py_str(query)
    };
    let out = match q.as_str() {
        "" => Value::from(s.trim()),
        "address" => {
            // A network (address == network, prefix given) is not an address, as in Ansible.
            if c.has_prefix
                && c.prefix < bits(&c.addr)
                && c.addr == c.network()
                && c.prefix < bits(&c.addr) - 1
            {
                return Ok(None);
            }
            Value::from(c.addr.to_string())
        }
        "host" => Value::from(format!("{}/{}", c.addr, c.prefix)),
        "network" => Value::from(c.network().to_string()),
        "prefix" => Value::from(c.prefix),
        "netmask" => Value::from(c.addr_of_int(c.mask()).to_string()),
        "broadcast" => Value::from(c.broadcast().to_string()),
        "net" | "subnet" | "cidr" | "network/prefix" => {
            if q == "net" && c.addr != c.network() {
                return Ok(None);
            }
            Value::from(format!("{}/{}", c.network(), c.prefix))
        }
        "size" => Value::from(c.size() as u64),
        "version" => Value::from(if c.addr.is_ipv4() { 4 } else { 6 }),
        "ipv4" if c.addr.is_ipv4() => Value::from(s.trim()),
        "ipv6" if !c.addr.is_ipv4() => Value::from(s.trim()),
        "ipv4" | "ipv6" => return Ok(None),
        "private" => {
            if !is_private(&c.addr) {
                return Ok(None);
            }
            Value::from(s.trim())
        }
        "public" => {
            if is_private(&c.addr) {
                return Ok(None);
            }
            Value::from(s.trim())
        }
        "wrap" | "ipwrap" => Value::from(wrap(s.trim(), &c)),
        other => return Err(fail(format!("ipaddr: unsupported query '{other}'"))),
    };
    Ok(Some(out))
}

fn wrap(s: &str, c: &Cidr) -> String {
    if c.addr.is_ipv4() || s.starts_with('[') {
        return s.to_string();
    }
    match s.split_once('/') {
        Some((a, p)) => format!("[{a}]/{p}"),
        None => format!("[{s}]"),
    }
}

fn run(value: Value, query: Option<Value>, version: Option<u32>) -> Result<Value, Error> {
    need(&value)?;
    let query = query.unwrap_or(Value::from(""));
    if matches!(value.kind(), ValueKind::Seq | ValueKind::Iterable) {
        let mut out = Vec::new();
        for item in value.try_iter()? {
            if let Some(v) = apply(&py_str(&item), &query, version)? {
                out.push(v);
            }
        }
        return Ok(Value::from(out));
    }
    Ok(apply(&py_str(&value), &query, version)?.unwrap_or(Value::from(false)))
}

/// `ipaddr(query='')`.
pub(crate) fn ipaddr(value: Value, query: Option<Value>) -> Result<Value, Error> {
    run(value, query, None)
}

/// `ipv4(query='')`.
pub(crate) fn ipv4(value: Value, query: Option<Value>) -> Result<Value, Error> {
    run(value, query, Some(4))
}

/// `ipv6(query='')`.
pub(crate) fn ipv6(value: Value, query: Option<Value>) -> Result<Value, Error> {
    run(value, query, Some(6))
}

/// `ipwrap`: IPv6 addresses in brackets; other strings unchanged.
pub(crate) fn ipwrap(value: Value) -> Result<Value, Error> {
    need(&value)?;
    let one = |s: String| match Cidr::parse(&s) {
        Some(c) => wrap(&s, &c),
        None => s,
    };
    if value.kind() == ValueKind::Seq {
        return Ok(Value::from(
            value
                .try_iter()?
                .map(|x| one(py_str(&x)))
                .collect::<Vec<_>>(),
        ));
    }
    Ok(Value::from(one(py_str(&value))))
}
