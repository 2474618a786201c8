//! Images and kernels on the host side: the files, never the records.
//!
//! - [`ext4`]: recognising ext4 images and editing them without mounting
//!   (`mkfs.ext4 -d`, `debugfs -w`, `e2fsck`).
//! - [`kernel`]: checking a vmlinux; [`kernel_build`]: building one from
//!   Debian's linux-source with the repo's config fragment.
//! - [`flatten`]: OCI layers into one tree, whiteouts honoured, nothing
//!   outside the root; [`oci`]: `docker save` / OCI layout archives and
//!   image configs; [`bundle`]: `.tar.zst` image and kernel bundles.
//! - [`golden`]: building the Debian golden image with debootstrap.
//!
//! Nothing here mounts a filesystem or needs device-mapper or loop devices.

pub mod build;
pub mod bundle;
pub mod ext4;
pub mod flatten;
pub mod golden;
pub mod kernel;
pub mod kernel_build;
pub mod oci;
