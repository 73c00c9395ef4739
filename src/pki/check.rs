//! `check`: the expiration table of `kubeadm certs check-expiration` (leaf certificates and
//! kubeconfigs, then CAs), and whether anything is missing or expired.

use std::path::Path;

use time::{Duration, OffsetDateTime};

use super::info::CertInfo;
use super::kubeconfig::Kubeconfig;
use super::renew::{display_name, kubeconfig_files};
use super::spec::{CA_NAMES, LEAF_NAMES};
use super::store::{read_optional, Store};
use super::PkiError;

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckRow {
    /// Display name (`apiserver`, `etcd-server`, `admin.conf`, `etcd-ca`).
    pub name: String,
    /// Expiry, when the certificate could be read.
    pub expires: Option<OffsetDateTime>,
    /// Signing CA's display name (empty for CA rows).
    pub ca: String,
    /// True when the CA key is not on disk.
    pub externally_managed: bool,
    /// `missing`, `expired`, `unreadable: …`; `None` when fine.
    pub problem: Option<String>,
}

/// The whole table.
#[derive(Debug, Clone)]
pub struct CheckReport {
    /// When the check ran.
    pub now: OffsetDateTime,
    /// Leaf certificates and kubeconfigs.
    pub certs: Vec<CheckRow>,
    /// Certificate authorities.
    pub cas: Vec<CheckRow>,
}

impl CheckReport {
    /// True when nothing is missing, unreadable or expired.
    pub fn ok(&self) -> bool {
        self.certs
            .iter()
            .chain(&self.cas)
            .all(|r| r.problem.is_none())
    }

    /// The two tables as text, columns aligned like kubeadm's.
    pub fn render(&self) -> String {
        let yes_no = |b: bool| if b { "yes" } else { "no" }.to_string();
        let mut leaf = vec![vec![
            "CERTIFICATE".to_string(),
            "EXPIRES".into(),
            "RESIDUAL TIME".into(),
            "CERTIFICATE AUTHORITY".into(),
            "EXTERNALLY MANAGED".into(),
        ]];
        for r in &self.certs {
            let (expires, residual) = self.when(r);
            leaf.push(vec![
                r.name.clone(),
                expires,
                residual,
                r.ca.clone(),
                yes_no(r.externally_managed),
            ]);
        }
        let mut cas = vec![vec![
            "CERTIFICATE AUTHORITY".to_string(),
            "EXPIRES".into(),
            "RESIDUAL TIME".into(),
            "EXTERNALLY MANAGED".into(),
        ]];
        for r in &self.cas {
            let (expires, residual) = self.when(r);
            cas.push(vec![
                r.name.clone(),
                expires,
                residual,
                yes_no(r.externally_managed),
            ]);
        }
        format!("{}\n{}", table(&leaf), table(&cas))
    }

    fn when(&self, r: &CheckRow) -> (String, String) {
        match (&r.expires, &r.problem) {
            (Some(t), _) => (format_time(*t), residual(*t - self.now)),
            (None, Some(p)) => (format!("<{p}>"), String::new()),
            (None, None) => (String::new(), String::new()),
        }
    }
}

/// Reads every leaf certificate, kubeconfig and CA.
pub fn check(store: &Store, kubeconfig_dir: &Path) -> Result<CheckReport, PkiError> {
    std::fs::read_dir(&store.dir).map_err(|source| PkiError::Io {
        path: store.dir.clone(),
        source,
    })?;
    let now = OffsetDateTime::now_utc();
    let ca_external = |ca: &str| -> Result<bool, PkiError> { Ok(store.read_key(ca)?.is_none()) };
    let row = |name: String,
               ca: &str,
               pem: Option<Result<String, String>>|
     -> Result<CheckRow, PkiError> {
        let (expires, problem) = match pem {
            None => (None, Some("missing".to_string())),
            Some(Err(e)) => (None, Some(format!("unreadable: {e}"))),
            Some(Ok(pem)) => match CertInfo::from_pem(pem.as_bytes()) {
                Ok(info) => {
                    let problem = info.expired(now).then(|| "expired".to_string());
                    (Some(info.not_after), problem)
                }
                Err(e) => (None, Some(format!("unreadable: {e}"))),
            },
        };
        Ok(CheckRow {
            name,
            expires,
            ca: if ca.is_empty() {
                String::new()
            } else {
                display_name(ca)
            },
            externally_managed: ca_external(if ca.is_empty() { "ca" } else { ca })?,
            problem,
        })
    };
    let mut certs = Vec::new();
    for file in kubeconfig_files(kubeconfig_dir)? {
        let path = kubeconfig_dir.join(&file);
        let pem =
            read_optional(&path)?.map(|text| Kubeconfig::parse(&text, &path).map(|k| k.cert_pem));
        certs.push(row(file, "ca", pem)?);
    }
    for (name, ca) in LEAF_NAMES {
        certs.push(row(display_name(name), ca, store.read_cert(name)?.map(Ok))?);
    }
    certs.sort_by(|a, b| a.name.cmp(&b.name));
    let mut cas = Vec::new();
    for name in CA_NAMES {
        let mut r = row(display_name(name), "", store.read_cert(name)?.map(Ok))?;
        r.externally_managed = ca_external(name)?;
        cas.push(r);
    }
    Ok(CheckReport { now, certs, cas })
}

/// `Jan 02, 2027 15:04 UTC` (kubeadm's format).
pub fn format_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let month = &format!("{:?}", t.month())[..3];
    format!(
        "{month} {:02}, {} {:02}:{:02} UTC",
        t.day(),
        t.year(),
        t.hour(),
        t.minute()
    )
}

/// kubeadm's short human duration: `<invalid>`, `45s`, `12m`, `30h`, `364d`, `9y`.
pub fn residual(d: Duration) -> String {
    let secs = d.whole_seconds();
    if secs < -1 {
        "<invalid>".into()
    } else if secs < 0 {
        "0s".into()
    } else if secs < 60 {
        format!("{secs}s")
    } else if secs < 3600 {
        format!("{}m", secs / 60)
    } else if secs < 48 * 3600 {
        format!("{}h", secs / 3600)
    } else if secs < 2 * 365 * 86400 {
        format!("{}d", secs / 86400)
    } else {
        format!("{}y", secs / (365 * 86400))
    }
}

fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..cols)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, cell)| format!("{cell:<w$}", w = widths[i]))
            .collect();
        out.push_str(line.join("   ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn residual_like_kubeadm() {
        assert_eq!(residual(Duration::days(365) - Duration::minutes(1)), "364d");
        assert_eq!(residual(Duration::days(3650)), "10y");
        assert_eq!(residual(Duration::hours(30)), "30h");
        assert_eq!(residual(Duration::seconds(-5)), "<invalid>");
    }

    #[test]
    fn time_format() {
        let t = time::Date::from_calendar_date(2027, time::Month::January, 2)
            .unwrap()
            .with_hms(15, 4, 0)
            .unwrap()
            .assume_utc();
        assert_eq!(format_time(t), "Jan 02, 2027 15:04 UTC");
    }
}
