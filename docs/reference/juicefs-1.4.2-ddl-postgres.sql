-- Tables juicefs 1.4.2 creates on PostgreSQL 15 (`juicefs format postgres://...`), dumped with pg_dump --schema-only.
-- Reference for the PostgreSQL dialect of the SQL engine (issue 5).
CREATE TABLE public.jfs_acl (
    id integer NOT NULL,
    owner integer,
    "group" integer,
    mask integer,
    other integer,
    named_users bytea,
    named_groups bytea
);
CREATE SEQUENCE public.jfs_acl_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;
ALTER SEQUENCE public.jfs_acl_id_seq OWNED BY public.jfs_acl.id;
CREATE TABLE public.jfs_change_log (
    id bigint NOT NULL,
    entry text NOT NULL
);
CREATE SEQUENCE public.jfs_change_log_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;
ALTER SEQUENCE public.jfs_change_log_id_seq OWNED BY public.jfs_change_log.id;
CREATE TABLE public.jfs_chunk (
    id bigint NOT NULL,
    inode bigint NOT NULL,
    indx integer NOT NULL,
    slices bytea NOT NULL
);
CREATE SEQUENCE public.jfs_chunk_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;
ALTER SEQUENCE public.jfs_chunk_id_seq OWNED BY public.jfs_chunk.id;
CREATE TABLE public.jfs_chunk_ref (
    chunkid bigint NOT NULL,
    size integer NOT NULL,
    refs integer NOT NULL
);
CREATE TABLE public.jfs_counter (
    name character varying(255) NOT NULL,
    value bigint NOT NULL
);
CREATE TABLE public.jfs_delegation_token (
    id integer NOT NULL,
    token bytea
);
CREATE SEQUENCE public.jfs_delegation_token_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;
ALTER SEQUENCE public.jfs_delegation_token_id_seq OWNED BY public.jfs_delegation_token.id;
CREATE TABLE public.jfs_delfile (
    inode bigint NOT NULL,
    length bigint NOT NULL,
    expire bigint NOT NULL
);
CREATE TABLE public.jfs_delslices (
    chunkid bigint NOT NULL,
    deleted bigint NOT NULL,
    slices bytea NOT NULL
);
CREATE TABLE public.jfs_detached_node (
    inode bigint NOT NULL,
    added bigint NOT NULL
);
CREATE TABLE public.jfs_dir_quota (
    inode bigint NOT NULL,
    max_space bigint NOT NULL,
    max_inodes bigint NOT NULL,
    used_space bigint NOT NULL,
    used_inodes bigint NOT NULL
);
CREATE TABLE public.jfs_dir_stats (
    inode bigint NOT NULL,
    data_length bigint NOT NULL,
    used_space bigint NOT NULL,
    used_inodes bigint NOT NULL
);
CREATE TABLE public.jfs_edge (
    id bigint NOT NULL,
    parent bigint NOT NULL,
    name bytea NOT NULL,
    inode bigint NOT NULL,
    type integer NOT NULL
);
CREATE SEQUENCE public.jfs_edge_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;
ALTER SEQUENCE public.jfs_edge_id_seq OWNED BY public.jfs_edge.id;
CREATE TABLE public.jfs_flock (
    id bigint NOT NULL,
    inode bigint NOT NULL,
    sid bigint NOT NULL,
    owner bigint NOT NULL,
    ltype integer NOT NULL
);
CREATE SEQUENCE public.jfs_flock_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;
ALTER SEQUENCE public.jfs_flock_id_seq OWNED BY public.jfs_flock.id;
CREATE TABLE public.jfs_node (
    inode bigint NOT NULL,
    type integer NOT NULL,
    flags integer NOT NULL,
    mode integer NOT NULL,
    uid integer NOT NULL,
    gid integer NOT NULL,
    atime bigint NOT NULL,
    mtime bigint NOT NULL,
    ctime bigint NOT NULL,
    atimensec integer DEFAULT 0 NOT NULL,
    mtimensec integer DEFAULT 0 NOT NULL,
    ctimensec integer DEFAULT 0 NOT NULL,
    nlink integer NOT NULL,
    length bigint NOT NULL,
    rdev integer,
    parent bigint,
    access_acl_id integer,
    default_acl_id integer,
    tier_id integer
);
CREATE TABLE public.jfs_plock (
    id bigint NOT NULL,
    inode bigint NOT NULL,
    sid bigint NOT NULL,
    owner bigint NOT NULL,
    records bytea NOT NULL
);
CREATE SEQUENCE public.jfs_plock_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;
ALTER SEQUENCE public.jfs_plock_id_seq OWNED BY public.jfs_plock.id;
CREATE TABLE public.jfs_session2 (
    sid bigint NOT NULL,
    expire bigint NOT NULL,
    info bytea
);
CREATE TABLE public.jfs_setting (
    name character varying(255) NOT NULL,
    value text NOT NULL
);
CREATE TABLE public.jfs_sustained (
    id bigint NOT NULL,
    sid bigint NOT NULL,
    inode bigint NOT NULL
);
CREATE SEQUENCE public.jfs_sustained_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;
ALTER SEQUENCE public.jfs_sustained_id_seq OWNED BY public.jfs_sustained.id;
CREATE TABLE public.jfs_symlink (
    inode bigint NOT NULL,
    target bytea NOT NULL
);
CREATE TABLE public.jfs_user_group_quota (
    qtype integer NOT NULL,
    qkey bigint NOT NULL,
    max_space bigint NOT NULL,
    max_inodes bigint NOT NULL,
    used_space bigint NOT NULL,
    used_inodes bigint NOT NULL
);
CREATE TABLE public.jfs_xattr (
    id bigint NOT NULL,
    inode bigint NOT NULL,
    name character varying(255) NOT NULL,
    value bytea NOT NULL
);
CREATE SEQUENCE public.jfs_xattr_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;
ALTER SEQUENCE public.jfs_xattr_id_seq OWNED BY public.jfs_xattr.id;
ALTER TABLE ONLY public.jfs_acl ALTER COLUMN id SET DEFAULT nextval('public.jfs_acl_id_seq'::regclass);
ALTER TABLE ONLY public.jfs_change_log ALTER COLUMN id SET DEFAULT nextval('public.jfs_change_log_id_seq'::regclass);
ALTER TABLE ONLY public.jfs_chunk ALTER COLUMN id SET DEFAULT nextval('public.jfs_chunk_id_seq'::regclass);
ALTER TABLE ONLY public.jfs_delegation_token ALTER COLUMN id SET DEFAULT nextval('public.jfs_delegation_token_id_seq'::regclass);
ALTER TABLE ONLY public.jfs_edge ALTER COLUMN id SET DEFAULT nextval('public.jfs_edge_id_seq'::regclass);
ALTER TABLE ONLY public.jfs_flock ALTER COLUMN id SET DEFAULT nextval('public.jfs_flock_id_seq'::regclass);
ALTER TABLE ONLY public.jfs_plock ALTER COLUMN id SET DEFAULT nextval('public.jfs_plock_id_seq'::regclass);
ALTER TABLE ONLY public.jfs_sustained ALTER COLUMN id SET DEFAULT nextval('public.jfs_sustained_id_seq'::regclass);
ALTER TABLE ONLY public.jfs_xattr ALTER COLUMN id SET DEFAULT nextval('public.jfs_xattr_id_seq'::regclass);
ALTER TABLE ONLY public.jfs_acl
    ADD CONSTRAINT jfs_acl_pkey PRIMARY KEY (id);
ALTER TABLE ONLY public.jfs_change_log
    ADD CONSTRAINT jfs_change_log_pkey PRIMARY KEY (id);
ALTER TABLE ONLY public.jfs_chunk
    ADD CONSTRAINT jfs_chunk_pkey PRIMARY KEY (id);
ALTER TABLE ONLY public.jfs_chunk_ref
    ADD CONSTRAINT jfs_chunk_ref_pkey PRIMARY KEY (chunkid);
ALTER TABLE ONLY public.jfs_counter
    ADD CONSTRAINT jfs_counter_pkey PRIMARY KEY (name);
ALTER TABLE ONLY public.jfs_delegation_token
    ADD CONSTRAINT jfs_delegation_token_pkey PRIMARY KEY (id);
ALTER TABLE ONLY public.jfs_delfile
    ADD CONSTRAINT jfs_delfile_pkey PRIMARY KEY (inode);
ALTER TABLE ONLY public.jfs_delslices
    ADD CONSTRAINT jfs_delslices_pkey PRIMARY KEY (chunkid);
ALTER TABLE ONLY public.jfs_detached_node
    ADD CONSTRAINT jfs_detached_node_pkey PRIMARY KEY (inode);
ALTER TABLE ONLY public.jfs_dir_quota
    ADD CONSTRAINT jfs_dir_quota_pkey PRIMARY KEY (inode);
ALTER TABLE ONLY public.jfs_dir_stats
    ADD CONSTRAINT jfs_dir_stats_pkey PRIMARY KEY (inode);
ALTER TABLE ONLY public.jfs_edge
    ADD CONSTRAINT jfs_edge_pkey PRIMARY KEY (id);
ALTER TABLE ONLY public.jfs_flock
    ADD CONSTRAINT jfs_flock_pkey PRIMARY KEY (id);
ALTER TABLE ONLY public.jfs_node
    ADD CONSTRAINT jfs_node_pkey PRIMARY KEY (inode);
ALTER TABLE ONLY public.jfs_plock
    ADD CONSTRAINT jfs_plock_pkey PRIMARY KEY (id);
ALTER TABLE ONLY public.jfs_session2
    ADD CONSTRAINT jfs_session2_pkey PRIMARY KEY (sid);
ALTER TABLE ONLY public.jfs_setting
    ADD CONSTRAINT jfs_setting_pkey PRIMARY KEY (name);
ALTER TABLE ONLY public.jfs_sustained
    ADD CONSTRAINT jfs_sustained_pkey PRIMARY KEY (id);
ALTER TABLE ONLY public.jfs_symlink
    ADD CONSTRAINT jfs_symlink_pkey PRIMARY KEY (inode);
ALTER TABLE ONLY public.jfs_user_group_quota
    ADD CONSTRAINT jfs_user_group_quota_pkey PRIMARY KEY (qtype, qkey);
ALTER TABLE ONLY public.jfs_xattr
    ADD CONSTRAINT jfs_xattr_pkey PRIMARY KEY (id);
CREATE INDEX "IDX_jfs_chunk_ref_refs" ON public.jfs_chunk_ref USING btree (refs);
CREATE INDEX "IDX_jfs_edge_inode" ON public.jfs_edge USING btree (inode);
CREATE UNIQUE INDEX "UQE_jfs_chunk_chunk" ON public.jfs_chunk USING btree (inode, indx);
CREATE UNIQUE INDEX "UQE_jfs_edge_edge" ON public.jfs_edge USING btree (parent, name);
CREATE UNIQUE INDEX "UQE_jfs_flock_flock" ON public.jfs_flock USING btree (inode, sid, owner);
CREATE UNIQUE INDEX "UQE_jfs_plock_plock" ON public.jfs_plock USING btree (inode, sid, owner);
CREATE UNIQUE INDEX "UQE_jfs_sustained_sustained" ON public.jfs_sustained USING btree (sid, inode);
CREATE UNIQUE INDEX "UQE_jfs_xattr_name" ON public.jfs_xattr USING btree (inode, name);
