"""The chunk repository (backup format 3, vmsnap-format(5)): content-addressed
4 MiB chunks, each one zstd frame, stored once, and small manifests that list
a backup's chunks in order.

``backend`` stores named objects (a local folder; an object store later),
``layout`` names them (the chunk naming lives there alone), ``repository``
opens, creates and checks a repository, ``index`` caches which chunks it
holds, ``writer`` stores a volume, ``manifest`` writes and strictly reads
format 3 manifests, ``reader`` streams a disk back, ``check`` checks backups' chunks (for
verify), ``gc`` deletes chunks no manifest names (for prune), ``jobs`` are the commands
that need no guest (init, image store, export).
"""
