//! Storage for a lab through libvirt: the directory pool that holds the overlays and seeds
//! (an existing pool on `virt_disk_image_path`, or one duststack defines), and seed volumes
//! written and read through libvirt streams (so a remote hypervisor works the same way).

use anyhow::{anyhow, bail, Context};
use virt::storage_pool::StoragePool;
use virt::storage_vol::StorageVol;
use virt::stream::Stream;

use super::{Change, Libvirt};
use crate::lab::libvirt_xml::escape;
use crate::lab::model::{Lab, Node};

/// The storage pool a lab uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolInfo {
    /// Pool name.
    pub name: String,
    /// Its target directory (overlay and seed paths are made from it).
    pub path: String,
    /// Whether duststack defined it for this lab (then `lab down` removes it when empty).
    pub created_by_duststack: bool,
}

/// Name of the pool duststack defines when none covers the lab's image directory.
pub fn own_pool_name(lab: &Lab) -> String {
    format!("duststack-{}", lab.name)
}

/// Name of a node's seed volume: `<lab>-<node>-seed.img`.
pub fn seed_volume_name(lab: &Lab, node: &Node) -> String {
    format!("{}-seed.img", lab.domain_name(node))
}

fn pool_path(xml: &str) -> anyhow::Result<Option<String>> {
    let doc =
        roxmltree::Document::parse(xml).context("libvirt returned XML that does not parse")?;
    Ok(doc
        .root_element()
        .children()
        .find(|c| c.has_tag_name("target"))
        .and_then(|t| t.children().find(|c| c.has_tag_name("path")))
        .and_then(|p| p.text())
        .map(|t| t.trim().trim_end_matches('/').to_string()))
}

impl Libvirt {
    fn pool_info(&self, pool: &StoragePool, ours: &str) -> anyhow::Result<PoolInfo> {
        let name = pool
            .get_name()
            .map_err(|e| anyhow!("{}: {}", self.uri, e.message()))?;
        let xml = pool
            .get_xml_desc(0)
            .map_err(|e| anyhow!("{}: pool {name}: {}", self.uri, e.message()))?;
        let path = pool_path(&xml)?
            .ok_or_else(|| anyhow!("{}: pool {name} has no target directory", self.uri))?;
        Ok(PoolInfo {
            created_by_duststack: name == ours,
            name,
            path,
        })
    }

    /// The pool the lab would use, without creating anything: `explicit` by name, else the
    /// pool whose directory is the lab's image directory, else duststack's own pool if defined.
    pub fn find_pool(&self, lab: &Lab, explicit: Option<&str>) -> anyhow::Result<Option<PoolInfo>> {
        let ours = own_pool_name(lab);
        if let Some(name) = explicit {
            let pool = self.pool(name)?;
            return self.pool_info(&pool, &ours).map(Some);
        }
        let want = lab.image_dir.trim_end_matches('/');
        let pools = self
            .conn
            .list_all_storage_pools(0)
            .map_err(|e| anyhow!("{}: listing storage pools: {}", self.uri, e.message()))?;
        for pool in &pools {
            let info = self.pool_info(pool, &ours)?;
            if info.path == want || info.name == ours {
                return Ok(Some(info));
            }
        }
        Ok(None)
    }

    /// [`Self::find_pool`], and when there is none, defines, builds (creates the directory) and
    /// starts a directory pool `duststack-<lab>` on the lab's image directory. An inactive pool
    /// is started.
    pub fn ensure_pool(
        &self,
        lab: &Lab,
        explicit: Option<&str>,
    ) -> anyhow::Result<(PoolInfo, Change)> {
        if let Some(info) = self.find_pool(lab, explicit)? {
            let pool = self.pool(&info.name)?;
            let active = pool
                .is_active()
                .map_err(|e| anyhow!("{}: pool {}: {}", self.uri, info.name, e.message()))?;
            if active {
                return Ok((info, Change::Unchanged));
            }
            pool.create(0).map_err(|e| {
                anyhow!("{}: starting pool {}: {}", self.uri, info.name, e.message())
            })?;
            return Ok((info, Change::Started));
        }
        let name = own_pool_name(lab);
        let path = lab.image_dir.trim_end_matches('/').to_string();
        let xml = format!(
            "<pool type='dir'><name>{}</name><target><path>{}</path></target></pool>",
            escape(&name),
            escape(&path)
        );
        let pool = StoragePool::define_xml(&self.conn, &xml, 0)
            .map_err(|e| anyhow!("{}: defining pool {name}: {}", self.uri, e.message()))?;
        let started = pool.build(0).and_then(|_| pool.create(0));
        if let Err(e) = started {
            let _ = pool.undefine();
            bail!(
                "{}: creating pool {name} on {path}: {}",
                self.uri,
                e.message()
            );
        }
        Ok((
            PoolInfo {
                name,
                path,
                created_by_duststack: true,
            },
            Change::Created,
        ))
    }

    /// Removes duststack's own pool of this lab if it holds no volumes any more (the directory
    /// itself stays). Returns whether it was removed.
    pub fn remove_own_pool_if_empty(&self, lab: &Lab) -> anyhow::Result<bool> {
        let name = own_pool_name(lab);
        let Ok(pool) = StoragePool::lookup_by_name(&self.conn, &name) else {
            return Ok(false);
        };
        let err = |e: virt::error::Error| anyhow!("{}: pool {name}: {}", self.uri, e.message());
        if pool.is_active().map_err(err)? {
            pool.refresh(0).map_err(err)?;
            if !pool.list_volumes().map_err(err)?.is_empty() {
                return Ok(false);
            }
            pool.destroy().map_err(err)?;
        }
        pool.undefine().map_err(err)?;
        Ok(true)
    }

    /// Creates raw volume `name` in `pool` holding exactly `bytes` (uploaded through a stream),
    /// unless a volume of that name exists (then nothing is written: seeds are never replaced,
    /// the host keys in them are the VM's identity).
    pub fn ensure_bytes_volume(
        &self,
        pool: &str,
        name: &str,
        bytes: &[u8],
    ) -> anyhow::Result<Change> {
        let p = self.pool(pool)?;
        if StorageVol::lookup_by_name(&p, name).is_ok() {
            return Ok(Change::Unchanged);
        }
        let xml = format!(
            "<volume><name>{}</name><capacity unit='bytes'>{}</capacity>\
             <target><format type='raw'/><permissions><mode>0600</mode></permissions></target></volume>",
            escape(name),
            bytes.len()
        );
        let vol = StorageVol::create_xml(&p, &xml, 0).map_err(|e| {
            anyhow!(
                "{}: creating volume {name} in pool {pool}: {}",
                self.uri,
                e.message()
            )
        })?;
        if let Err(err) = self.upload(&vol, bytes) {
            let _ = vol.delete(0);
            return Err(err.context(format!("{}: writing volume {pool}/{name}", self.uri)));
        }
        Ok(Change::Created)
    }

    fn upload(&self, vol: &StorageVol, bytes: &[u8]) -> anyhow::Result<()> {
        let stream = Stream::new(&self.conn, 0).map_err(|e| anyhow!("{}", e.message()))?;
        vol.upload(&stream, 0, bytes.len() as u64, 0)
            .map_err(|e| anyhow!("{}", e.message()))?;
        let mut sent = 0;
        while sent < bytes.len() {
            let end = (sent + 256 * 1024).min(bytes.len());
            let n = stream
                .send(&bytes[sent..end])
                .map_err(|e| anyhow!("{}", e.message()))?;
            if n == 0 {
                bail!("the stream accepted no data");
            }
            sent += n;
        }
        stream.finish().map_err(|e| anyhow!("{}", e.message()))
    }

    /// The whole content of volume `name` in `pool` (None if the pool or the volume is absent).
    pub fn read_volume(&self, pool: &str, name: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let Ok(p) = StoragePool::lookup_by_name(&self.conn, pool) else {
            return Ok(None);
        };
        let Ok(vol) = StorageVol::lookup_by_name(&p, name) else {
            return Ok(None);
        };
        let stream = Stream::new(&self.conn, 0).map_err(|e| anyhow!("{}", e.message()))?;
        vol.download(&stream, 0, 0, 0).map_err(|e| {
            anyhow!(
                "{}: reading volume {pool}/{name}: {}",
                self.uri,
                e.message()
            )
        })?;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = stream.recv(&mut buf).map_err(|e| {
                anyhow!(
                    "{}: reading volume {pool}/{name}: {}",
                    self.uri,
                    e.message()
                )
            })?;
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        stream.finish().map_err(|e| {
            anyhow!(
                "{}: reading volume {pool}/{name}: {}",
                self.uri,
                e.message()
            )
        })?;
        Ok(Some(out))
    }
}
