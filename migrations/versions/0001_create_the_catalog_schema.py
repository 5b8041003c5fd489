"""Create the catalog schema: images, lineage, detections, verdicts, generators, jobs, splits, evaluations.

Revision ID: 0001
Revises: 
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('detection_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('detector', sa.String(length=64), nullable=False),
    sa.Column('version', sa.String(length=32), nullable=False),
    sa.Column('params_hash', sa.String(length=64), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('detector', 'version', 'params_hash', name='uq_detection_runs_key')
    )
    op.create_table('generators',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('preset', sa.String(length=32), nullable=True),
    sa.Column('query', sa.Text(), nullable=False),
    sa.Column('config', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('label', sa.String(length=16), nullable=True),
    sa.Column('view', sa.String(length=8), nullable=True),
    sa.Column('side', sa.String(length=8), nullable=True),
    sa.Column('output_dir', sa.Text(), nullable=False),
    sa.Column('checkpoint_path', sa.Text(), nullable=True),
    sa.Column('initial_bits_per_dim', sa.Float(), nullable=True),
    sa.Column('bits_per_dim', sa.Float(), nullable=True),
    sa.Column('best_step', sa.Integer(), nullable=True),
    sa.Column('steps_done', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('jobs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=True),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('progress', sa.Float(), nullable=False),
    sa.Column('total', sa.Float(), nullable=True),
    sa.Column('message', sa.Text(), nullable=True),
    sa.Column('log', sa.Text(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('result', sa.JSON(), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=True),
    sa.Column('cancel_requested', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.create_index('ix_jobs_key', ['key'], unique=False)
        batch_op.create_index('ix_jobs_status', ['status'], unique=False)

    op.create_table('splits',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('query', sa.Text(), nullable=False),
    sa.Column('synthetic_query', sa.Text(), nullable=True),
    sa.Column('seed', sa.Integer(), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('locked', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('checkpoints',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('generator_id', sa.Integer(), nullable=False),
    sa.Column('step', sa.Integer(), nullable=False),
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('sample_grid_path', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['generator_id'], ['generators.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('generator_id', 'step', name='uq_checkpoints_step')
    )
    op.create_table('evaluations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('split_id', sa.Integer(), nullable=True),
    sa.Column('generator_id', sa.Integer(), nullable=True),
    sa.Column('experiment', sa.String(length=128), nullable=True),
    sa.Column('config', sa.JSON(), nullable=False),
    sa.Column('seeds', sa.JSON(), nullable=False),
    sa.Column('metrics', sa.JSON(), nullable=False),
    sa.Column('versions', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('seconds', sa.Float(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['generator_id'], ['generators.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['split_id'], ['splits.id'], ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('evaluations', schema=None) as batch_op:
        batch_op.create_index('ix_evaluations_split', ['split_id'], unique=False)

    op.create_table('generator_metrics',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('generator_id', sa.Integer(), nullable=False),
    sa.Column('step', sa.Integer(), nullable=False),
    sa.Column('loss', sa.Float(), nullable=True),
    sa.Column('train_bits_per_dim', sa.Float(), nullable=True),
    sa.Column('heldout_bits_per_dim', sa.Float(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['generator_id'], ['generators.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('generator_id', 'step', name='uq_generator_metrics_step')
    )
    op.create_table('images',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('file_path', sa.Text(), nullable=False),
    sa.Column('work_path', sa.Text(), nullable=True),
    sa.Column('file_size', sa.Integer(), nullable=False),
    sa.Column('width', sa.Integer(), nullable=False),
    sa.Column('height', sa.Integer(), nullable=False),
    sa.Column('bit_depth', sa.Integer(), nullable=False),
    sa.Column('file_format', sa.String(length=16), nullable=False),
    sa.Column('dataset', sa.String(length=32), nullable=False),
    sa.Column('patient_key', sa.String(length=128), nullable=True),
    sa.Column('case_id', sa.String(length=64), nullable=True),
    sa.Column('label', sa.String(length=16), nullable=True),
    sa.Column('label_source', sa.String(length=64), nullable=True),
    sa.Column('view', sa.String(length=8), nullable=True),
    sa.Column('view_source', sa.String(length=64), nullable=True),
    sa.Column('side', sa.String(length=8), nullable=True),
    sa.Column('side_source', sa.String(length=64), nullable=True),
    sa.Column('origin', sa.String(length=16), nullable=False),
    sa.Column('method', sa.String(length=32), nullable=True),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('generator_id', sa.Integer(), nullable=True),
    sa.Column('latent_path', sa.Text(), nullable=True),
    sa.Column('extra', sa.JSON(), nullable=False),
    sa.Column('marking_verdict', sa.Boolean(), nullable=True),
    sa.Column('marking_detected', sa.Boolean(), nullable=True),
    sa.Column('marking_score', sa.Float(), nullable=True),
    sa.Column('marking', sa.String(length=12), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['generator_id'], ['generators.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('sha256')
    )
    with op.batch_alter_table('images', schema=None) as batch_op:
        batch_op.create_index('ix_images_dataset', ['dataset'], unique=False)
        batch_op.create_index('ix_images_facets', ['label', 'view', 'side', 'origin', 'method'], unique=False)
        batch_op.create_index('ix_images_generator', ['generator_id'], unique=False)
        batch_op.create_index('ix_images_label_side', ['label', 'side', 'origin'], unique=False)
        batch_op.create_index('ix_images_marking', ['marking', 'label', 'view', 'side'], unique=False)
        batch_op.create_index('ix_images_origin_method', ['origin', 'method'], unique=False)
        batch_op.create_index('ix_images_patient', ['patient_key'], unique=False)

    op.create_table('detections',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('image_id', sa.Integer(), nullable=False),
    sa.Column('score', sa.Float(), nullable=False),
    sa.Column('flagged', sa.Boolean(), nullable=False),
    sa.Column('boxes', sa.JSON(), nullable=False),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['image_id'], ['images.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['run_id'], ['detection_runs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('run_id', 'image_id', name='uq_detections_run_image')
    )
    with op.batch_alter_table('detections', schema=None) as batch_op:
        batch_op.create_index('ix_detections_image', ['image_id'], unique=False)

    op.create_table('generator_images',
    sa.Column('generator_id', sa.Integer(), nullable=False),
    sa.Column('image_id', sa.Integer(), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.ForeignKeyConstraint(['generator_id'], ['generators.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['image_id'], ['images.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('generator_id', 'image_id')
    )
    with op.batch_alter_table('generator_images', schema=None) as batch_op:
        batch_op.create_index('ix_generator_images_image', ['image_id'], unique=False)

    op.create_table('lineage',
    sa.Column('child_id', sa.Integer(), nullable=False),
    sa.Column('parent_id', sa.Integer(), nullable=False),
    sa.Column('role', sa.String(length=32), nullable=False),
    sa.ForeignKeyConstraint(['child_id'], ['images.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['parent_id'], ['images.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('child_id', 'parent_id', 'role')
    )
    with op.batch_alter_table('lineage', schema=None) as batch_op:
        batch_op.create_index('ix_lineage_parent', ['parent_id'], unique=False)

    op.create_table('marking_verdicts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('image_id', sa.Integer(), nullable=False),
    sa.Column('marked', sa.Boolean(), nullable=True),
    sa.Column('boxes', sa.JSON(), nullable=False),
    sa.Column('curator', sa.String(length=64), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['image_id'], ['images.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('marking_verdicts', schema=None) as batch_op:
        batch_op.create_index('ix_marking_verdicts_image', ['image_id'], unique=False)

    op.create_table('split_exclusions',
    sa.Column('split_id', sa.Integer(), nullable=False),
    sa.Column('image_id', sa.Integer(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['image_id'], ['images.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['split_id'], ['splits.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('split_id', 'image_id')
    )
    op.create_table('split_members',
    sa.Column('split_id', sa.Integer(), nullable=False),
    sa.Column('image_id', sa.Integer(), nullable=False),
    sa.Column('side', sa.String(length=8), nullable=False),
    sa.ForeignKeyConstraint(['image_id'], ['images.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['split_id'], ['splits.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('split_id', 'image_id')
    )
    with op.batch_alter_table('split_members', schema=None) as batch_op:
        batch_op.create_index('ix_split_members_image', ['image_id'], unique=False)
        batch_op.create_index('ix_split_members_side', ['split_id', 'side'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('split_members', schema=None) as batch_op:
        batch_op.drop_index('ix_split_members_side')
        batch_op.drop_index('ix_split_members_image')

    op.drop_table('split_members')
    op.drop_table('split_exclusions')
    with op.batch_alter_table('marking_verdicts', schema=None) as batch_op:
        batch_op.drop_index('ix_marking_verdicts_image')

    op.drop_table('marking_verdicts')
    with op.batch_alter_table('lineage', schema=None) as batch_op:
        batch_op.drop_index('ix_lineage_parent')

    op.drop_table('lineage')
    with op.batch_alter_table('generator_images', schema=None) as batch_op:
        batch_op.drop_index('ix_generator_images_image')

    op.drop_table('generator_images')
    with op.batch_alter_table('detections', schema=None) as batch_op:
        batch_op.drop_index('ix_detections_image')

    op.drop_table('detections')
    with op.batch_alter_table('images', schema=None) as batch_op:
        batch_op.drop_index('ix_images_patient')
        batch_op.drop_index('ix_images_origin_method')
        batch_op.drop_index('ix_images_marking')
        batch_op.drop_index('ix_images_label_side')
        batch_op.drop_index('ix_images_generator')
        batch_op.drop_index('ix_images_facets')
        batch_op.drop_index('ix_images_dataset')

    op.drop_table('images')
    op.drop_table('generator_metrics')
    with op.batch_alter_table('evaluations', schema=None) as batch_op:
        batch_op.drop_index('ix_evaluations_split')

    op.drop_table('evaluations')
    op.drop_table('checkpoints')
    op.drop_table('splits')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_jobs_status')
        batch_op.drop_index('ix_jobs_key')

    op.drop_table('jobs')
    op.drop_table('generators')
    op.drop_table('detection_runs')
