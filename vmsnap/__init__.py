"""vmsnap: consistent backups and clones of libvirt guests whose disks are LVM volumes."""

__version__ = "0.1.0"
