"""The numbered migrations, shipped inside the wheel as the package ``workflow_db.sql``.

``sqlite/`` and ``postgresql/`` hold one file per version, ``NNNN_name.sql``;
both dialects have the same versions. See README.md, "Migrations".
"""
